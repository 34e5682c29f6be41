//! CloudEvents 1.0 envelopes, built the way Dapr builds them for published events.

use base64::Engine as _;
use serde_json::{Map, Value};

pub const CLOUDEVENTS_CONTENT_TYPE: &str = "application/cloudevents+json";
pub const DEFAULT_EVENT_TYPE: &str = "com.dapr.event.sent";
pub const SPEC_VERSION: &str = "1.0";
/// Dapr's default `datacontenttype` when the publisher gives none.
pub const DEFAULT_DATA_CONTENT_TYPE: &str = "text/plain";

/// Where an event comes from and goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext<'a> {
    /// The publishing app's id (`source`).
    pub source: &'a str,
    pub topic: &'a str,
    pub pubsub: &'a str,
    /// W3C `traceparent` of the publish call.
    pub traceparent: &'a str,
    pub tracestate: &'a str,
    /// RFC 3339 time of publishing.
    pub time: &'a str,
    /// RFC 3339 expiry, from `ttlInSeconds`.
    pub expiration: Option<&'a str>,
}

/// A content type without its parameters (`; charset=…`) and surrounding blanks.
fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Whether `text` starts with `prefix`, ignoring ASCII case.
fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

/// Whether `text` ends with `suffix`, ignoring ASCII case.
fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len()
        .checked_sub(suffix.len())
        .and_then(|start| text.get(start..))
        .is_some_and(|end| end.eq_ignore_ascii_case(suffix))
}

/// Whether a content type carries JSON (`application/json`, `application/*+json`, `text/json`).
pub fn is_json(content_type: &str) -> bool {
    let essence = essence(content_type);
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/json")
        || ends_with_ignore_case(essence, "+json")
}

/// Whether a content type is binary, carried as `data_base64`.
fn is_binary(content_type: &str) -> bool {
    let essence = essence(content_type);
    [
        "application/octet-stream",
        "application/protobuf",
        "application/x-protobuf",
    ]
    .iter()
    .any(|binary| essence.eq_ignore_ascii_case(binary))
        || ["image/", "audio/", "video/"]
            .iter()
            .any(|prefix| starts_with_ignore_case(essence, prefix))
}

/// Wraps a payload in a new envelope: JSON payloads are embedded as JSON, binary ones as
/// `data_base64`, anything else as a string.
pub fn wrap(
    data: &[u8],
    content_type: Option<&str>,
    context: &EventContext<'_>,
) -> Map<String, Value> {
    let content_type = content_type
        .filter(|value| !value.is_empty())
        .unwrap_or(DEFAULT_DATA_CONTENT_TYPE);
    let mut event = Map::new();
    event.insert("id".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    event.insert("source".into(), Value::String(context.source.to_string()));
    event.insert("type".into(), Value::String(DEFAULT_EVENT_TYPE.into()));
    event.insert("specversion".into(), Value::String(SPEC_VERSION.into()));
    event.insert(
        "datacontenttype".into(),
        Value::String(content_type.to_string()),
    );
    if is_binary(content_type) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(data);
        event.insert("data_base64".into(), Value::String(encoded));
    } else {
        let parsed = is_json(content_type)
            .then(|| serde_json::from_slice::<Value>(data).ok())
            .flatten();
        let value =
            parsed.unwrap_or_else(|| Value::String(String::from_utf8_lossy(data).into_owned()));
        event.insert("data".into(), value);
    }
    add_routing_fields(&mut event, context, true);
    event
}

/// Fields a publisher may set on a new envelope (Dapr's `cloudevent.<field>` metadata).
#[derive(Debug, Default, Clone, Copy)]
pub struct EnvelopeOverrides<'a> {
    pub id: Option<&'a str>,
    pub source: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub traceid: Option<&'a str>,
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
}

/// Appends `text` as a JSON string. Most envelope fields and payloads need no escaping; they
/// are copied in one go, and only the rest goes through serde_json's escaping.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // No short-circuit, so the check compiles to a vectorised loop.
    let needs_escape = text.bytes().fold(false, |found, byte| {
        found | (byte < 0x20) | (byte == b'"') | (byte == b'\\')
    });
    if needs_escape {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    } else {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// Appends `"name":`, after a comma unless it is the object's first field. `name` is one of
/// the envelope's own field names, which need no escaping.
fn write_key(out: &mut Vec<u8>, name: &str) {
    if out.len() > 1 {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// Appends a field whose value is a string.
fn write_field(out: &mut Vec<u8>, name: &str, value: &str) {
    write_key(out, name);
    write_json_string(out, value);
}

/// [`wrap`] and serialise in one go, without building a map: the publish path's version, one
/// allocation for the id and one for the bytes in the common case. The fields are written in
/// name order, so the bytes match what serialising [`wrap`]'s map gives.
pub fn encode_new(
    data: &[u8],
    content_type: Option<&str>,
    context: &EventContext<'_>,
    overrides: &EnvelopeOverrides<'_>,
) -> Vec<u8> {
    let content_type = content_type
        .filter(|value| !value.is_empty())
        .unwrap_or(DEFAULT_DATA_CONTENT_TYPE);
    let mut out = Vec::with_capacity(384 + data.len() + data.len() / 3);
    out.push(b'{');
    if is_binary(content_type) {
        write_field(
            &mut out,
            "data_base64",
            &base64::engine::general_purpose::STANDARD.encode(data),
        );
    } else {
        let json = is_json(content_type)
            .then(|| serde_json::from_slice::<&serde_json::value::RawValue>(data).ok())
            .flatten();
        match json {
            Some(raw) => {
                write_key(&mut out, "data");
                out.extend_from_slice(raw.get().as_bytes());
            }
            None => match std::str::from_utf8(data) {
                Ok(text) => write_field(&mut out, "data", text),
                Err(_) => write_field(&mut out, "data", &String::from_utf8_lossy(data)),
            },
        }
    }
    let mut id_buffer = uuid::Uuid::encode_buffer();
    let generated_id = uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut id_buffer);
    write_field(&mut out, "datacontenttype", content_type);
    if let Some(expiration) = context.expiration {
        write_field(&mut out, "expiration", expiration);
    }
    write_field(&mut out, "id", overrides.id.unwrap_or(generated_id));
    write_field(&mut out, "pubsubname", context.pubsub);
    write_field(
        &mut out,
        "source",
        overrides.source.unwrap_or(context.source),
    );
    write_field(&mut out, "specversion", SPEC_VERSION);
    write_field(&mut out, "time", context.time);
    write_field(&mut out, "topic", context.topic);
    write_field(
        &mut out,
        "traceid",
        overrides.traceid.unwrap_or(context.traceparent),
    );
    write_field(
        &mut out,
        "traceparent",
        overrides.traceparent.unwrap_or(context.traceparent),
    );
    write_field(
        &mut out,
        "tracestate",
        overrides.tracestate.unwrap_or(context.tracestate),
    );
    write_field(
        &mut out,
        "type",
        overrides.event_type.unwrap_or(DEFAULT_EVENT_TYPE),
    );
    out.push(b'}');
    out
}

/// Completes an event the app sent as a CloudEvent: routing and tracing fields are set,
/// `id`, `source`, `type`, `specversion` and `datacontenttype` only when missing.
pub fn complete(mut event: Map<String, Value>, context: &EventContext<'_>) -> Map<String, Value> {
    let defaults = [
        ("id", Value::String(uuid::Uuid::new_v4().to_string())),
        ("source", Value::String(context.source.to_string())),
        ("type", Value::String(DEFAULT_EVENT_TYPE.into())),
        ("specversion", Value::String(SPEC_VERSION.into())),
        ("datacontenttype", Value::String("application/json".into())),
    ];
    for (field, value) in defaults {
        if event.get(field).is_none_or(Value::is_null) {
            event.insert(field.to_string(), value);
        }
    }
    add_routing_fields(&mut event, context, false);
    event
}

fn add_routing_fields(
    event: &mut Map<String, Value>,
    context: &EventContext<'_>,
    overwrite_time: bool,
) {
    event.insert("topic".into(), Value::String(context.topic.to_string()));
    event.insert(
        "pubsubname".into(),
        Value::String(context.pubsub.to_string()),
    );
    event.insert(
        "traceid".into(),
        Value::String(context.traceparent.to_string()),
    );
    event.insert(
        "traceparent".into(),
        Value::String(context.traceparent.to_string()),
    );
    event.insert(
        "tracestate".into(),
        Value::String(context.tracestate.to_string()),
    );
    if overwrite_time || !event.contains_key("time") {
        event.insert("time".into(), Value::String(context.time.to_string()));
    }
    if let Some(expiration) = context.expiration {
        event.insert("expiration".into(), Value::String(expiration.to_string()));
    }
}

/// A new W3C trace context for a call that arrived without one.
pub fn new_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn context() -> EventContext<'static> {
        EventContext {
            source: "checkout",
            topic: "orders",
            pubsub: "pubsub",
            traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            tracestate: "",
            time: "2026-11-22T00:00:00Z",
            expiration: None,
        }
    }

    #[test]
    fn json_text_and_binary_payloads_are_wrapped_like_dapr() {
        let event = wrap(br#"{"id":7}"#, Some("application/json"), &context());
        assert_eq!(event["data"], json!({"id": 7}));
        assert_eq!(event["type"], "com.dapr.event.sent");
        assert_eq!(event["source"], "checkout");
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["topic"], "orders");
        assert_eq!(event["pubsubname"], "pubsub");
        assert_eq!(event["traceid"], event["traceparent"]);
        assert_eq!(event["time"], "2026-11-22T00:00:00Z");
        assert!(uuid::Uuid::parse_str(event["id"].as_str().expect("id")).is_ok());

        let text = wrap(b"hello", None, &context());
        assert_eq!(text["data"], "hello");
        assert_eq!(text["datacontenttype"], "text/plain");

        let binary = wrap(&[0, 1, 2], Some("application/octet-stream"), &context());
        assert_eq!(binary["data_base64"], "AAEC");
        assert!(!binary.contains_key("data"));

        let not_really_json = wrap(b"{oops", Some("application/json"), &context());
        assert_eq!(not_really_json["data"], "{oops");
    }

    #[test]
    fn encode_new_gives_the_bytes_of_the_wrapped_map() {
        let cases: [(&[u8], Option<&str>); 5] = [
            (
                br#"{"id": 7, "big": 12345678901234567890}"#,
                Some("application/json"),
            ),
            (b"hello \"quoted\" \xff", None),
            (&[0, 1, 2], Some("application/octet-stream")),
            (b"{oops", Some("application/json")),
            (b"plain", Some("text/plain; charset=utf-8")),
        ];
        let mut expiring = context();
        expiring.expiration = Some("2026-11-22T00:01:00Z");
        for (data, content_type) in cases {
            for context in [context(), expiring.clone()] {
                let encoded: Value = serde_json::from_slice(&encode_new(
                    data,
                    content_type,
                    &context,
                    &EnvelopeOverrides::default(),
                ))
                .unwrap();
                let Value::Object(mut encoded) = encoded else {
                    panic!("not an object")
                };
                let mut wrapped = wrap(data, content_type, &context);
                let id = encoded.remove("id").expect("id");
                assert!(uuid::Uuid::parse_str(id.as_str().expect("id")).is_ok());
                wrapped.remove("id");
                if content_type == Some("application/json") && data.starts_with(b"{\"id") {
                    // The raw JSON is kept as sent: a number too big for f64 stays exact.
                    assert_eq!(encoded["data"]["big"].to_string(), "12345678901234567890");
                    encoded.remove("data");
                    wrapped.remove("data");
                }
                assert_eq!(encoded, wrapped, "{content_type:?}");
            }
        }
    }

    #[test]
    fn encode_new_writes_the_bytes_serde_json_writes_for_the_map() {
        let overrides = EnvelopeOverrides {
            id: Some("fixed"),
            ..EnvelopeOverrides::default()
        };
        let mut awkward = context();
        awkward.source = "app \"quoted\" \\ back\u{1}slash";
        awkward.tracestate = "k=v\n";
        awkward.expiration = Some("2026-11-22T00:01:00Z");
        let cases: [(&[u8], Option<&str>); 6] = [
            (b"plain text", None),
            (
                "tab\t, quote \", control \u{7f}\u{1f}, é, 🚀".as_bytes(),
                Some("text/plain"),
            ),
            (b"not utf-8 \xff\xfe", Some("text/plain")),
            (br#"{"a": [1, 2]}"#, Some("Application/JSON; charset=utf-8")),
            (&[0, 1, 2, 255], Some("IMAGE/png")),
            (b"{oops", Some("application/cloudevents+json")),
        ];
        for (data, content_type) in cases {
            for context in [context(), awkward.clone()] {
                let mut wrapped = wrap(data, content_type, &context);
                wrapped.insert("id".into(), Value::String("fixed".into()));
                let expected = serde_json::to_vec(&wrapped).unwrap();
                let encoded = encode_new(data, content_type, &context, &overrides);
                if content_type
                    .is_some_and(|content_type| content_type.starts_with("Application/JSON"))
                {
                    // The raw JSON is kept as sent, spaces included; the map re-serialises it.
                    let encoded: Value = serde_json::from_slice(&encoded).unwrap();
                    assert_eq!(encoded, Value::Object(wrapped));
                } else {
                    assert_eq!(
                        String::from_utf8_lossy(&encoded),
                        String::from_utf8_lossy(&expected),
                        "{content_type:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn content_types_are_recognised_in_any_case() {
        assert!(is_json("application/json"));
        assert!(is_json(" Application/JSON ; charset=utf-8"));
        assert!(is_json("application/vnd.order+JSON"));
        assert!(is_json("text/json"));
        assert!(!is_json("application/jsonx"));
        assert!(!is_json("json"));
        assert!(is_binary("application/octet-stream"));
        assert!(is_binary("Image/PNG"));
        assert!(is_binary("application/x-protobuf"));
        assert!(!is_binary("text/plain"));
        assert!(!is_binary("imag"));
    }

    #[test]
    fn encode_new_applies_overrides() {
        let overrides = EnvelopeOverrides {
            id: Some("fixed"),
            source: Some("other-app"),
            event_type: Some("order.placed"),
            traceid: Some("t-1"),
            traceparent: None,
            tracestate: Some("k=v"),
        };
        let encoded: Value =
            serde_json::from_slice(&encode_new(b"x", None, &context(), &overrides)).unwrap();
        assert_eq!(encoded["id"], "fixed");
        assert_eq!(encoded["source"], "other-app");
        assert_eq!(encoded["type"], "order.placed");
        assert_eq!(encoded["traceid"], "t-1");
        assert_eq!(encoded["traceparent"], context().traceparent);
        assert_eq!(encoded["tracestate"], "k=v");
    }

    #[test]
    fn an_existing_cloud_event_keeps_its_fields_and_gains_routing() {
        let Value::Object(original) = json!({"id": "e-1", "source": "elsewhere", "type": "order.placed", "specversion": "1.0", "data": {"a": 1}, "topic": "wrong"})
        else {
            unreachable!()
        };
        let event = complete(original, &context());
        assert_eq!(event["id"], "e-1");
        assert_eq!(event["source"], "elsewhere");
        assert_eq!(event["type"], "order.placed");
        assert_eq!(event["topic"], "orders", "routing fields are the sidecar's");
        assert_eq!(event["pubsubname"], "pubsub");
        assert_eq!(event["data"], json!({"a": 1}));
        let Value::Object(bare) = json!({"data": 1}) else {
            unreachable!()
        };
        let event = complete(bare, &context());
        assert!(event.contains_key("id") && event["type"] == "com.dapr.event.sent");
    }
}
