//! Route matching: Envoy's `RouteMatch` over path, headers and query parameters.

use std::borrow::Cow;

use http::{HeaderMap, Method};

use crate::model::{
    HeaderMatcher, HeaderRule, PathMatch, QueryParameterMatcher, Route, RouteMatch, VirtualHost,
};

use super::path::decode_hex_pair;
use super::string_match::{regex_full_match, starts_with, string_matches};

/// What route matching looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    /// Normalised (see [`super::normalize_path`]), without the query string.
    pub path: &'a str,
    /// The raw query string, without the `?`.
    pub query: Option<&'a str>,
    /// Header matchers named `:authority` read the `host` header, so for HTTP/2 requests the
    /// caller must have copied the URI authority into `host`.
    pub headers: &'a HeaderMap,
}

/// The first route of `vhost`, in order, whose match accepts `request`.
pub fn match_route<'a>(vhost: &'a VirtualHost, request: &RequestFacts<'_>) -> Option<&'a Route> {
    vhost
        .routes
        .iter()
        .find(|route| route_matches(&route.matcher, request))
}

/// Whether one `RouteMatch` accepts `request`: its path rule, every header matcher and every
/// query parameter matcher.
pub fn route_matches(matcher: &RouteMatch, request: &RequestFacts<'_>) -> bool {
    path_matches(&matcher.path, matcher.case_sensitive, request.path)
        && matcher
            .headers
            .iter()
            .all(|header| header_matches(header, request))
        && matcher
            .query_parameters
            .iter()
            .all(|parameter| query_parameter_matches(parameter, request.query))
}

fn path_matches(rule: &PathMatch, case_sensitive: bool, path: &str) -> bool {
    match rule {
        PathMatch::Prefix(prefix) => starts_with(path, prefix, case_sensitive),
        PathMatch::Exact(exact) => {
            if case_sensitive {
                path == exact
            } else {
                path.eq_ignore_ascii_case(exact)
            }
        }
        PathMatch::Regex(regex) => regex_full_match(regex, path),
        PathMatch::PathSeparatedPrefix(prefix) => {
            starts_with(path, prefix, case_sensitive)
                && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
        }
    }
}

/// Envoy's `HeaderMatcher`: the rule's result, flipped by `invert`. A missing header fails
/// every value and range rule (so an inverted one matches).
fn header_matches(matcher: &HeaderMatcher, request: &RequestFacts<'_>) -> bool {
    let value = header_value(&matcher.name, request);
    let matched = match (&matcher.rule, &value) {
        (HeaderRule::Present(expected), _) => value.is_some() == *expected,
        (_, None) => false,
        (HeaderRule::Value(string_matcher), Some(value)) => string_matches(string_matcher, value),
        (HeaderRule::Range { start, end }, Some(value)) => value
            .parse::<i64>()
            .is_ok_and(|number| *start <= number && number < *end),
    };
    matched != matcher.invert
}

/// A header's value for matching: several values joined with `,` (as Envoy does); the
/// pseudo-headers `:authority` (the `Host` header), `:method` and `:path` (with the query).
fn header_value<'a>(name: &str, request: &RequestFacts<'a>) -> Option<Cow<'a, str>> {
    let name = match name {
        ":method" => return Some(Cow::Borrowed(request.method.as_str())),
        ":path" => {
            return Some(match request.query {
                Some(query) => Cow::Owned(format!("{}?{query}", request.path)),
                None => Cow::Borrowed(request.path),
            });
        }
        ":authority" => "host",
        other => other,
    };
    let mut values = request.headers.get_all(name).iter();
    let first = values.next()?;
    let mut joined = String::from_utf8_lossy(first.as_bytes());
    for value in values {
        let joined = joined.to_mut();
        joined.push(',');
        joined.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
    Some(joined)
}

/// Envoy's `QueryParameterMatcher`: the first parameter with the name decides; names and
/// values are percent-decoded (`+` is not a space); `value: None` only requires presence.
fn query_parameter_matches(matcher: &QueryParameterMatcher, query: Option<&str>) -> bool {
    let Some(value) = query_parameter(query.unwrap_or(""), &matcher.name) else {
        return false;
    };
    matcher
        .value
        .as_ref()
        .is_none_or(|string_matcher| string_matches(string_matcher, &value))
}

/// The decoded value of the first parameter called `name`; `""` for a bare `name`.
fn query_parameter(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(raw_name) == name).then(|| percent_decode(raw_value))
        })
}

/// Decodes every valid `%XX`; invalid escapes are kept as written.
fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut position = 0;
    while let Some(&byte) = bytes.get(position) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(position + 1..position + 3))
            .flatten()
            .and_then(decode_hex_pair);
        match escaped {
            Some(value) => {
                decoded.push(value);
                position += 3;
            }
            None => {
                decoded.push(byte);
                position += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;
    use crate::model::{RouteAction, RouteFault, StringMatcher, StringPattern};
    use crate::router::full_match_regex;

    fn route_match(path: PathMatch) -> RouteMatch {
        RouteMatch {
            path,
            case_sensitive: true,
            headers: Vec::new(),
            query_parameters: Vec::new(),
        }
    }

    fn facts<'a>(
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a HeaderMap,
    ) -> RequestFacts<'a> {
        RequestFacts {
            method: &Method::GET,
            path,
            query,
            headers,
        }
    }

    fn path_ok(matcher: &RouteMatch, path: &str) -> bool {
        route_matches(matcher, &facts(path, None, &HeaderMap::new()))
    }

    #[test]
    fn prefix_match_with_and_without_case() {
        let mut matcher = route_match(PathMatch::Prefix("/Api".into()));
        assert!(path_ok(&matcher, "/Api/v1"));
        assert!(path_ok(&matcher, "/Apix"));
        assert!(!path_ok(&matcher, "/api/v1"));
        matcher.case_sensitive = false;
        assert!(path_ok(&matcher, "/api/v1"));
        assert!(!path_ok(&matcher, "/ap"));
    }

    #[test]
    fn exact_match_with_and_without_case() {
        let mut matcher = route_match(PathMatch::Exact("/Health".into()));
        assert!(path_ok(&matcher, "/Health"));
        assert!(!path_ok(&matcher, "/health"));
        assert!(!path_ok(&matcher, "/Health/"));
        matcher.case_sensitive = false;
        assert!(path_ok(&matcher, "/HEALTH"));
    }

    #[test]
    fn regex_match_is_full_and_case_sensitive() {
        let matcher = route_match(PathMatch::Regex(
            full_match_regex("/v[0-9]+/items").unwrap(),
        ));
        assert!(path_ok(&matcher, "/v12/items"));
        assert!(!path_ok(&matcher, "/v12/items/3"));
        assert!(!path_ok(&matcher, "/x/v12/items"));
        assert!(!path_ok(&matcher, "/V12/items"));
    }

    #[test]
    fn path_separated_prefix_needs_a_separator_or_the_end() {
        let mut matcher = route_match(PathMatch::PathSeparatedPrefix("/api".into()));
        assert!(path_ok(&matcher, "/api"));
        assert!(path_ok(&matcher, "/api/x"));
        assert!(!path_ok(&matcher, "/apix"));
        assert!(!path_ok(&matcher, "/API/x"));
        matcher.case_sensitive = false;
        assert!(path_ok(&matcher, "/API/x"));
        assert!(!path_ok(&matcher, "/APIx"));
    }

    fn header_rule(name: &str, rule: HeaderRule, invert: bool) -> RouteMatch {
        RouteMatch {
            headers: vec![HeaderMatcher {
                name: name.into(),
                rule,
                invert,
            }],
            ..route_match(PathMatch::Prefix("/".into()))
        }
    }

    fn value_rule(pattern: StringPattern, ignore_case: bool) -> HeaderRule {
        HeaderRule::Value(StringMatcher {
            pattern,
            ignore_case,
        })
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn header_ok(matcher: &RouteMatch, map: &HeaderMap) -> bool {
        route_matches(matcher, &facts("/p", Some("a=1"), map))
    }

    #[test]
    fn header_value_matchers() {
        let map = headers(&[("x-user", "Alice-Admin")]);
        let cases = [
            (StringPattern::Exact("alice-admin".into()), true, true),
            (StringPattern::Exact("alice-admin".into()), false, false),
            (StringPattern::Prefix("ALICE".into()), true, true),
            (StringPattern::Suffix("-Admin".into()), false, true),
            (StringPattern::Suffix("-admin".into()), false, false),
            (StringPattern::Contains("e-a".into()), true, true),
            (StringPattern::Contains("e-a".into()), false, false),
            (
                StringPattern::Regex(full_match_regex("[A-Za-z]+-Admin").unwrap()),
                false,
                true,
            ),
            (
                StringPattern::Regex(full_match_regex("Alice").unwrap()),
                false,
                false,
            ),
        ];
        for (pattern, ignore_case, expected) in cases {
            let description = format!("{pattern:?} ignore_case={ignore_case}");
            let matcher = header_rule("x-user", value_rule(pattern, ignore_case), false);
            assert_eq!(header_ok(&matcher, &map), expected, "{description}");
        }
    }

    #[test]
    fn several_header_values_are_joined_with_commas() {
        let map = headers(&[("x-tag", "a"), ("x-tag", "b")]);
        let matcher = header_rule(
            "x-tag",
            value_rule(StringPattern::Exact("a,b".into()), false),
            false,
        );
        assert!(header_ok(&matcher, &map));
    }

    #[test]
    fn present_and_absent_matchers() {
        let map = headers(&[("x-debug", "")]);
        assert!(header_ok(
            &header_rule("x-debug", HeaderRule::Present(true), false),
            &map
        ));
        assert!(!header_ok(
            &header_rule("x-debug", HeaderRule::Present(false), false),
            &map
        ));
        assert!(header_ok(
            &header_rule("x-other", HeaderRule::Present(false), false),
            &map
        ));
        assert!(!header_ok(
            &header_rule("x-debug", HeaderRule::Present(true), true),
            &map
        ));
    }

    #[test]
    fn range_matcher_is_half_open() {
        let rule = || HeaderRule::Range { start: -5, end: 10 };
        let matcher = header_rule("x-n", rule(), false);
        assert!(header_ok(&matcher, &headers(&[("x-n", "-5")])));
        assert!(header_ok(&matcher, &headers(&[("x-n", "9")])));
        assert!(!header_ok(&matcher, &headers(&[("x-n", "10")])));
        assert!(!header_ok(&matcher, &headers(&[("x-n", "abc")])));
        assert!(!header_ok(&matcher, &HeaderMap::new()));
    }

    #[test]
    fn invert_flips_the_result_including_for_a_missing_header() {
        let exact = || value_rule(StringPattern::Exact("v".into()), false);
        let inverted = header_rule("x-h", exact(), true);
        assert!(header_ok(&inverted, &HeaderMap::new()));
        assert!(!header_ok(&inverted, &headers(&[("x-h", "v")])));
        assert!(header_ok(&inverted, &headers(&[("x-h", "w")])));
        assert!(!header_ok(
            &header_rule("x-h", exact(), false),
            &HeaderMap::new()
        ));
        let range = header_rule("x-h", HeaderRule::Range { start: 0, end: 1 }, true);
        assert!(header_ok(&range, &HeaderMap::new()));
    }

    #[test]
    fn pseudo_headers_are_matched() {
        let map = headers(&[("host", "reviews:9080")]);
        let authority = header_rule(
            ":authority",
            value_rule(StringPattern::Prefix("reviews".into()), false),
            false,
        );
        assert!(header_ok(&authority, &map));
        let method = header_rule(
            ":method",
            value_rule(StringPattern::Exact("GET".into()), false),
            false,
        );
        assert!(header_ok(&method, &map));
        let path = header_rule(
            ":path",
            value_rule(StringPattern::Exact("/p?a=1".into()), false),
            false,
        );
        assert!(header_ok(&path, &map));
    }

    fn query_rule(name: &str, value: Option<StringPattern>) -> RouteMatch {
        RouteMatch {
            query_parameters: vec![QueryParameterMatcher {
                name: name.into(),
                value: value.map(|pattern| StringMatcher {
                    pattern,
                    ignore_case: false,
                }),
            }],
            ..route_match(PathMatch::Prefix("/".into()))
        }
    }

    fn query_ok(matcher: &RouteMatch, query: Option<&str>) -> bool {
        route_matches(matcher, &facts("/", query, &HeaderMap::new()))
    }

    #[test]
    fn query_parameter_matchers() {
        let exact = |value: &str| query_rule("q", Some(StringPattern::Exact(value.into())));
        assert!(query_ok(&exact("a b"), Some("x=1&q=a%20b")));
        assert!(query_ok(&exact("a+b"), Some("q=a+b")));
        assert!(!query_ok(&exact("a b"), Some("q=a+b")));
        assert!(query_ok(&exact("first"), Some("q=first&q=second")));
        assert!(query_ok(&exact("100%zz"), Some("q=100%zz")));
        assert!(query_ok(&exact("%+1"), Some("q=%+1")));
        assert!(query_ok(&exact(""), Some("q")));
        assert!(!query_ok(&exact("v"), None));
        assert!(query_ok(
            &query_rule("na me", Some(StringPattern::Exact("v".into()))),
            Some("na%20me=v")
        ));

        let present = query_rule("debug", None);
        assert!(query_ok(&present, Some("debug")));
        assert!(query_ok(&present, Some("a=1&debug=")));
        assert!(!query_ok(&present, Some("debugging=1")));
        assert!(!query_ok(&present, None));
    }

    #[test]
    fn first_matching_route_in_order_wins() {
        let route = |name: &str, path: PathMatch| Route {
            name: name.into(),
            matcher: route_match(path),
            action: RouteAction::DirectResponse {
                status: 200,
                body: None,
            },
            headers: Default::default(),
            fault: RouteFault::Inherit,
        };
        let vhost = VirtualHost {
            routes: vec![
                route("exact", PathMatch::Exact("/a".into())),
                route("prefix", PathMatch::Prefix("/a".into())),
                route("all", PathMatch::Prefix("/".into())),
            ],
            ..VirtualHost::default()
        };
        let map = HeaderMap::new();
        let name = |path: &str| {
            match_route(&vhost, &facts(path, None, &map)).map(|route| route.name.clone())
        };
        assert_eq!(name("/a").unwrap(), "exact");
        assert_eq!(name("/ab").unwrap(), "prefix");
        assert_eq!(name("/b").unwrap(), "all");
        let empty = VirtualHost::default();
        assert!(match_route(&empty, &facts("/", None, &map)).is_none());
    }
}
