//! Building the `TopicEventRequest` a gRPC subscriber receives from a published message.

use base64::Engine as _;
use dapr::dapr::proto::runtime::v1 as runtime;
use outrigger_components::pubsub::ReceivedMessage;
use serde_json::{Map, Value};

/// CloudEvent attributes that have their own `TopicEventRequest` field.
const OWN_FIELDS: [&str; 7] = [
    "id",
    "source",
    "datacontenttype",
    "type",
    "specversion",
    "data",
    "data_base64",
];

/// The event for a subscriber: a CloudEvent's attributes and data, or, for a raw payload, a
/// new envelope around the bytes.
pub fn topic_event(
    message: &ReceivedMessage,
    pubsub: &str,
    path: &str,
) -> runtime::TopicEventRequest {
    let Ok(event) = serde_json::from_slice::<Map<String, Value>>(&message.data) else {
        return runtime::TopicEventRequest {
            id: uuid::Uuid::new_v4().to_string(),
            source: String::new(),
            r#type: crate::cloudevents::DEFAULT_EVENT_TYPE.into(),
            spec_version: crate::cloudevents::SPEC_VERSION.into(),
            data_content_type: "application/octet-stream".into(),
            data: message.data.to_vec(),
            topic: message.topic.clone(),
            pubsub_name: pubsub.to_string(),
            path: path.to_string(),
            extensions: None,
        };
    };
    let text = |field: &str| {
        event
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    // JSON-typed data is handed over as JSON (a string keeps its quotes); other text as is.
    let json_data = crate::cloudevents::is_json(&text("datacontenttype"));
    let data = match (event.get("data_base64"), event.get("data")) {
        (Some(Value::String(encoded)), _) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_default(),
        (_, Some(Value::String(text))) if !json_data => text.as_bytes().to_vec(),
        (_, Some(Value::Null)) | (_, None) => Vec::new(),
        (_, Some(other)) => serde_json::to_vec(other).unwrap_or_default(),
    };
    let extensions = event
        .iter()
        .filter(|(name, _)| !OWN_FIELDS.contains(&name.as_str()))
        .map(|(name, value)| (name.clone(), to_prost(value)))
        .collect();
    runtime::TopicEventRequest {
        id: text("id"),
        source: text("source"),
        r#type: text("type"),
        spec_version: text("specversion"),
        data_content_type: text("datacontenttype"),
        data,
        topic: message.topic.clone(),
        pubsub_name: pubsub.to_string(),
        path: path.to_string(),
        extensions: Some(prost_types::Struct { fields: extensions }),
    }
}

fn to_prost(value: &Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(flag) => Kind::BoolValue(*flag),
        Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        Value::String(text) => Kind::StringValue(text.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(to_prost).collect(),
        }),
        Value::Object(fields) => Kind::StructValue(prost_types::Struct {
            fields: fields
                .iter()
                .map(|(name, value)| (name.clone(), to_prost(value)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bytes::Bytes;

    use super::*;

    fn message(data: &[u8]) -> ReceivedMessage {
        ReceivedMessage {
            topic: "orders".into(),
            data: Bytes::copy_from_slice(data),
            content_type: None,
            metadata: HashMap::new(),
        }
    }

    #[test]
    fn cloud_event_fields_map_to_the_request() {
        let event = topic_event(
            &message(br#"{"id":"e1","source":"app","type":"t","specversion":"1.0","datacontenttype":"application/json","data":{"a":1},"traceparent":"tp"}"#),
            "pubsub",
            "/",
        );
        assert_eq!(
            (
                event.id.as_str(),
                event.source.as_str(),
                event.r#type.as_str()
            ),
            ("e1", "app", "t")
        );
        assert_eq!(event.data, br#"{"a":1}"#);
        let extensions = event.extensions.expect("extensions").fields;
        assert!(extensions.contains_key("traceparent") && !extensions.contains_key("data"));
    }

    #[test]
    fn raw_payloads_and_base64_data_arrive_as_bytes() {
        let raw = topic_event(&message(&[0, 159, 1]), "pubsub", "/");
        assert_eq!(raw.data, [0, 159, 1]);
        assert_eq!(raw.data_content_type, "application/octet-stream");
        let encoded = topic_event(
            &message(br#"{"id":"x","data_base64":"AAEC"}"#),
            "pubsub",
            "/",
        );
        assert_eq!(encoded.data, [0, 1, 2]);
        let text = topic_event(&message(br#"{"id":"x","data":"hello"}"#), "pubsub", "/");
        assert_eq!(text.data, b"hello");
        let json_string = topic_event(
            &message(br#"{"id":"x","datacontenttype":"application/json","data":"hello"}"#),
            "pubsub",
            "/",
        );
        assert_eq!(json_string.data, br#""hello""#);
    }
}
