//! What to subscribe to and where each event goes: Dapr's programmatic (`GET /dapr/subscribe`)
//! and declarative (`kind: Subscription`) forms, read into one validated shape.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

/// A compiled routing rule: events for which `expression` holds go to `path`.
#[derive(Clone)]
pub struct RouteRule {
    pub expression: String,
    pub program: Arc<cel::Program>,
    pub path: String,
}

impl std::fmt::Debug for RouteRule {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RouteRule")
            .field("expression", &self.expression)
            .field("path", &self.path)
            .finish()
    }
}

impl PartialEq for RouteRule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.path == other.path
    }
}

/// One subscription, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionSpec {
    pub pubsub: String,
    pub topic: String,
    pub rules: Vec<RouteRule>,
    /// Where events no rule matches go; without one they are dropped (dead-lettered if set).
    pub default_route: Option<String>,
    pub dead_letter_topic: Option<String>,
    pub metadata: HashMap<String, String>,
    /// Where it was declared, for log lines.
    pub origin: String,
}

impl SubscriptionSpec {
    /// The app path for an event, by the first matching rule, else the default route.
    pub fn route(&self, event: &serde_json::Value) -> Result<Option<&str>, String> {
        for rule in &self.rules {
            let mut context = cel::Context::default();
            context
                .add_variable("event", event.clone())
                .map_err(|error| {
                    format!("cannot expose the event to {:?}: {error}", rule.expression)
                })?;
            match rule.program.execute(&context) {
                Ok(cel::Value::Bool(true)) => return Ok(Some(&rule.path)),
                Ok(cel::Value::Bool(false)) => {}
                Ok(other) => {
                    return Err(format!(
                        "route match {:?} returned {other:?}, not a boolean",
                        rule.expression
                    ));
                }
                // A missing field makes the rule not match, as in Dapr.
                Err(_) => {}
            }
        }
        Ok(self.default_route.as_deref())
    }
}

/// Dapr's subscription JSON/YAML shape (both versions, both spellings of `pubsubname`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSubscription {
    #[serde(
        alias = "pubsubname",
        alias = "pubsubName",
        alias = "pubSubName",
        default
    )]
    pubsubname: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    route: Option<String>,
    #[serde(default)]
    routes: Option<RawRoutes>,
    #[serde(default)]
    dead_letter_topic: Option<String>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
}

#[derive(Debug, Deserialize)]
struct RawRoutes {
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    default: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawRule {
    #[serde(rename = "match", default)]
    expression: String,
    #[serde(default)]
    path: String,
}

fn normalize_path(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    }
}

impl RawSubscription {
    fn validate(self, origin: String) -> Result<SubscriptionSpec, String> {
        if self.pubsubname.is_empty() {
            return Err(format!("{origin}: pubsubname is required"));
        }
        if self.topic.is_empty() {
            return Err(format!("{origin}: topic is required"));
        }
        let mut rules = Vec::new();
        let mut default_route = self
            .route
            .filter(|route| !route.is_empty())
            .map(|route| normalize_path(&route));
        if let Some(routes) = self.routes {
            if let Some(default) = routes.default.filter(|route| !route.is_empty()) {
                default_route = Some(normalize_path(&default));
            }
            for (index, rule) in routes.rules.into_iter().enumerate() {
                if rule.expression.trim().is_empty() {
                    // Dapr treats a rule without `match` as the default route.
                    if default_route.is_none() && !rule.path.is_empty() {
                        default_route = Some(normalize_path(&rule.path));
                    }
                    continue;
                }
                let program = cel::Program::compile(&rule.expression).map_err(|error| {
                    format!("{origin}: routes.rules[{index}].match {:?} is not a valid CEL expression: {error}", rule.expression)
                })?;
                if rule.path.is_empty() {
                    return Err(format!("{origin}: routes.rules[{index}].path is required"));
                }
                rules.push(RouteRule {
                    expression: rule.expression,
                    program: Arc::new(program),
                    path: normalize_path(&rule.path),
                });
            }
        }
        Ok(SubscriptionSpec {
            pubsub: self.pubsubname,
            topic: self.topic,
            rules,
            default_route,
            dead_letter_topic: self.dead_letter_topic.filter(|topic| !topic.is_empty()),
            metadata: self.metadata.unwrap_or_default(),
            origin,
        })
    }
}

/// Parses the app's answer to `GET /dapr/subscribe`.
pub fn from_app_json(body: &[u8]) -> Result<Vec<SubscriptionSpec>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let raw: Vec<RawSubscription> = serde_json::from_slice(body).map_err(|error| {
        format!("GET /dapr/subscribe: the app's answer is not Dapr's subscription JSON: {error}")
    })?;
    raw.into_iter()
        .enumerate()
        .map(|(index, subscription)| {
            subscription.validate(format!("GET /dapr/subscribe entry {index}"))
        })
        .collect()
}

/// Reads the app's answer to `AppCallback.ListTopicSubscriptions`.
pub fn from_grpc(
    subscriptions: Vec<dapr::dapr::proto::runtime::v1::TopicSubscription>,
) -> Result<Vec<SubscriptionSpec>, String> {
    subscriptions
        .into_iter()
        .enumerate()
        .map(|(index, subscription)| {
            let routes = subscription.routes.map(|routes| RawRoutes {
                rules: routes
                    .rules
                    .into_iter()
                    .map(|rule| RawRule {
                        expression: rule.r#match,
                        path: rule.path,
                    })
                    .collect(),
                default: Some(routes.default),
            });
            RawSubscription {
                pubsubname: subscription.pubsub_name,
                topic: subscription.topic,
                route: None,
                routes,
                dead_letter_topic: Some(subscription.dead_letter_topic),
                metadata: Some(subscription.metadata),
            }
            .validate(format!("AppCallback.ListTopicSubscriptions entry {index}"))
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct RawDocument {
    #[serde(default)]
    metadata: RawDocumentMetadata,
    spec: RawSubscription,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawDocumentMetadata {
    #[serde(default)]
    name: String,
}

/// Reads every `kind: Subscription` document of a file that this app is in scope for.
pub fn from_yaml_file(
    path: &Path,
    text: &str,
    app_id: &str,
) -> Result<Vec<SubscriptionSpec>, String> {
    let mut specs = Vec::new();
    let documents: Vec<RawDocument> =
        outrigger_components::definition::documents_of_kind(path, text, "Subscription")?;
    for document in documents {
        if !document.scopes.is_empty() && !document.scopes.iter().any(|scope| scope == app_id) {
            continue;
        }
        let origin = format!(
            "{}: subscription {:?}",
            path.display(),
            document.metadata.name
        );
        specs.push(document.spec.validate(origin)?);
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_v1_and_v2_programmatic_subscriptions_and_routes_by_cel() {
        let specs = from_app_json(
            br#"[
              {"pubsubname":"pubsub","topic":"orders","route":"orders-handler","deadLetterTopic":"dead"},
              {"pubsubName":"pubsub","topic":"widgets","routes":{"rules":[
                 {"match":"event.type == \"widget.big\"","path":"/big"},
                 {"match":"event.data.size > 10","path":"/large"}],"default":"/other"}}
            ]"#,
        )
        .expect("valid");
        assert_eq!(specs[0].default_route.as_deref(), Some("/orders-handler"));
        assert_eq!(specs[0].dead_letter_topic.as_deref(), Some("dead"));
        let widgets = &specs[1];
        assert_eq!(
            widgets.route(&json!({"type":"widget.big","data":{}})),
            Ok(Some("/big"))
        );
        assert_eq!(
            widgets.route(&json!({"type":"x","data":{"size":11}})),
            Ok(Some("/large"))
        );
        assert_eq!(
            widgets.route(&json!({"type":"x","data":{"size":1}})),
            Ok(Some("/other"))
        );
        assert_eq!(
            widgets.route(&json!({"type":"x"})),
            Ok(Some("/other")),
            "a missing field does not match"
        );
    }

    #[test]
    fn bad_subscriptions_name_the_problem() {
        assert!(
            from_app_json(b"{}")
                .expect_err("not a list")
                .contains("/dapr/subscribe")
        );
        assert!(
            from_app_json(br#"[{"topic":"t"}]"#)
                .expect_err("no pubsub")
                .contains("pubsubname")
        );
        let error = from_app_json(br#"[{"pubsubname":"p","topic":"t","routes":{"rules":[{"match":"event.type ==","path":"/x"}]}}]"#)
            .expect_err("bad CEL");
        assert!(error.contains("routes.rules[0].match"), "{error}");
        assert_eq!(from_app_json(b"").expect("empty"), Vec::new());
    }

    #[test]
    fn reads_declarative_subscriptions_in_scope() {
        let yaml = "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s1\nspec:\n  pubsubname: pubsub\n  topic: a\n  routes:\n    default: /a\nscopes: [me]\n---\napiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: s2\nspec:\n  pubsubname: pubsub\n  topic: b\n  route: /b\nscopes: [someone-else]\n---\nkind: Component\nmetadata: {name: c}\n";
        let specs = from_yaml_file(Path::new("subs.yaml"), yaml, "me").expect("valid");
        assert_eq!(specs.len(), 1);
        assert_eq!(
            (specs[0].topic.as_str(), specs[0].default_route.as_deref()),
            ("a", Some("/a"))
        );
    }
}
