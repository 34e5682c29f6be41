//! Request and response header mutations (`*_headers_to_add` / `*_headers_to_remove`).

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::format::FormatContext;
use crate::model::{HeaderMutations, HeaderValueOption};

/// Applies the request mutations of `layers`, given most specific first (weighted cluster,
/// route, virtual host, route config).
///
/// Added values are formatted first, against the request headers as they arrived (`%REQ(x)%`).
/// Then all removals happen, then additions from the least to the most specific layer, so
/// that when two layers replace the same header (`append: false`) the more specific one wins.
/// `append: false` replaces every existing value; `append: true` adds a value. As with
/// Envoy's default `keep_empty_value: false`, a value that formats to nothing is not added.
/// Invalid names or values are skipped with a warning.
pub fn apply_request_mutations(
    headers: &mut HeaderMap,
    layers: &[&HeaderMutations],
    context: &FormatContext<'_>,
) {
    let context = FormatContext {
        request_headers: Some(&*headers),
        ..*context
    };
    let additions = formatted(layers, &context, |layer| &layer.request_add);
    apply(headers, layers, additions, |layer| &layer.request_remove);
}

/// Applies the response mutations of `layers`, given most specific first; the same rules as
/// [`apply_request_mutations`].
pub fn apply_response_mutations(
    headers: &mut HeaderMap,
    layers: &[&HeaderMutations],
    context: &FormatContext<'_>,
) {
    let additions = formatted(layers, context, |layer| &layer.response_add);
    apply(headers, layers, additions, |layer| &layer.response_remove);
}

/// Every addition of `layers`, least specific first, with its value formatted.
fn formatted<'a>(
    layers: &[&'a HeaderMutations],
    context: &FormatContext<'_>,
    additions: impl Fn(&'a HeaderMutations) -> &'a Vec<HeaderValueOption>,
) -> Vec<(&'a HeaderValueOption, Cow<'a, str>)> {
    layers
        .iter()
        .rev()
        .flat_map(|layer| additions(layer))
        .map(|option| (option, option.value.render(context)))
        .collect()
}

fn apply(
    headers: &mut HeaderMap,
    layers: &[&HeaderMutations],
    additions: Vec<(&HeaderValueOption, Cow<'_, str>)>,
    removals: impl Fn(&HeaderMutations) -> &Vec<String>,
) {
    for layer in layers {
        for name in removals(layer) {
            match HeaderName::from_bytes(name.as_bytes()) {
                Ok(name) => {
                    headers.remove(name);
                }
                Err(_) => {
                    tracing::warn!(header = %name, "skipping removal of an invalid header name")
                }
            }
        }
    }
    for (option, value) in additions {
        add_header(headers, option, &value);
    }
}

fn add_header(headers: &mut HeaderMap, option: &HeaderValueOption, value: &str) {
    if value.is_empty() {
        return;
    }
    let Ok(name) = HeaderName::from_bytes(option.name.as_bytes()) else {
        tracing::warn!(header = %option.name, "skipping an added header with an invalid name");
        return;
    };
    let Ok(value) = HeaderValue::from_str(value) else {
        tracing::warn!(header = %option.name, "skipping an added header with an invalid value");
        return;
    };
    if option.append {
        headers.append(name, value);
    } else {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::format::{HeaderDirection, HeaderFormat};

    fn context() -> FormatContext<'static> {
        FormatContext {
            request_headers: None,
            source_ip: Some("10.0.0.7".parse().unwrap()),
            start_time: std::time::SystemTime::now(),
        }
    }

    fn apply_request_mutations(headers: &mut HeaderMap, layers: &[&HeaderMutations]) {
        super::apply_request_mutations(headers, layers, &context());
    }

    fn apply_response_mutations(headers: &mut HeaderMap, layers: &[&HeaderMutations]) {
        super::apply_response_mutations(headers, layers, &context());
    }

    fn add(name: &str, value: &str, append: bool) -> HeaderValueOption {
        HeaderValueOption {
            name: name.into(),
            value: HeaderFormat::parse(value, HeaderDirection::Request).unwrap(),
            append,
        }
    }

    fn request_layer(add: Vec<HeaderValueOption>, remove: &[&str]) -> HeaderMutations {
        HeaderMutations {
            request_add: add,
            request_remove: remove.iter().map(|name| name.to_string()).collect(),
            ..HeaderMutations::default()
        }
    }

    fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn removals_happen_before_additions() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("old"));
        let route = request_layer(vec![add("x-a", "new", true)], &[]);
        let vhost = request_layer(Vec::new(), &["x-a"]);
        apply_request_mutations(&mut headers, &[&route, &vhost]);
        assert_eq!(values(&headers, "x-a"), ["new"]);
    }

    #[test]
    fn replace_overwrites_existing_and_append_adds() {
        let mut headers = HeaderMap::new();
        headers.append("x-r", HeaderValue::from_static("1"));
        headers.append("x-r", HeaderValue::from_static("2"));
        headers.insert("x-p", HeaderValue::from_static("1"));
        let layer = request_layer(vec![add("x-r", "3", false), add("x-p", "2", true)], &[]);
        apply_request_mutations(&mut headers, &[&layer]);
        assert_eq!(values(&headers, "x-r"), ["3"]);
        assert_eq!(values(&headers, "x-p"), ["1", "2"]);
    }

    #[test]
    fn more_specific_layer_wins_a_replace() {
        let mut headers = HeaderMap::new();
        let weighted = request_layer(vec![add("x-v", "cluster", false)], &[]);
        let route = request_layer(
            vec![add("x-v", "route", false), add("x-r", "route", false)],
            &[],
        );
        let vhost = request_layer(
            vec![add("x-v", "vhost", false), add("x-r", "vhost", true)],
            &[],
        );
        let config = request_layer(vec![add("x-c", "config", false)], &[]);
        apply_request_mutations(&mut headers, &[&weighted, &route, &vhost, &config]);
        assert_eq!(values(&headers, "x-v"), ["cluster"]);
        assert_eq!(values(&headers, "x-r"), ["route"]);
        assert_eq!(values(&headers, "x-c"), ["config"]);
    }

    #[test]
    fn less_specific_replace_then_more_specific_append() {
        let mut headers = HeaderMap::new();
        let route = request_layer(vec![add("x-v", "route", true)], &[]);
        let vhost = request_layer(vec![add("x-v", "vhost", false)], &[]);
        apply_request_mutations(&mut headers, &[&route, &vhost]);
        assert_eq!(values(&headers, "x-v"), ["vhost", "route"]);
    }

    #[test]
    fn invalid_and_empty_entries_are_skipped() {
        let mut headers = HeaderMap::new();
        headers.insert("x-keep", HeaderValue::from_static("1"));
        let layer = request_layer(
            vec![
                add("bad name", "v", false),
                add("x-bad-value", "a\nb", false),
                add("x-keep", "", false),
                add("x-ok", "v", false),
            ],
            &["bad name", ":path"],
        );
        apply_request_mutations(&mut headers, &[&layer]);
        assert_eq!(values(&headers, "x-keep"), ["1"]);
        assert!(headers.get("x-bad-value").is_none());
        assert_eq!(values(&headers, "x-ok"), ["v"]);
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn response_mutations_use_the_response_lists() {
        let mut headers = HeaderMap::new();
        headers.insert("server", HeaderValue::from_static("upstream"));
        let route = HeaderMutations {
            request_add: vec![add("x-request-only", "1", false)],
            response_add: vec![add("x-served-by", "route", false)],
            response_remove: vec!["server".into()],
            ..HeaderMutations::default()
        };
        let vhost = HeaderMutations {
            response_add: vec![add("x-served-by", "vhost", false)],
            ..HeaderMutations::default()
        };
        apply_response_mutations(&mut headers, &[&route, &vhost]);
        assert!(headers.get("server").is_none());
        assert!(headers.get("x-request-only").is_none());
        assert_eq!(values(&headers, "x-served-by"), ["route"]);
    }

    #[test]
    fn values_are_formatted_against_the_request_as_it_arrived() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", HeaderValue::from_static("jason"));
        let layer = request_layer(
            vec![
                add(
                    "x-client-ip",
                    "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                    false,
                ),
                add("x-was-user", "%REQ(x-user)%", false),
                add("x-user", "replaced", false),
                add("x-empty", "%REQ(x-missing)%", false),
            ],
            &["x-user"],
        );
        apply_request_mutations(&mut headers, &[&layer]);
        assert_eq!(values(&headers, "x-client-ip"), ["10.0.0.7"]);
        assert_eq!(values(&headers, "x-was-user"), ["jason"]);
        assert_eq!(values(&headers, "x-user"), ["replaced"]);
        assert!(headers.get("x-empty").is_none());
    }
}
