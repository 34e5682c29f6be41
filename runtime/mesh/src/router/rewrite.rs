//! Upstream path rewrites: `prefix_rewrite` and `regex_rewrite`.

use crate::model::{ForwardAction, PathMatch, RegexRewrite, RouteMatch};

use super::string_match::starts_with;

/// The path (and query) sent upstream for a request forwarded by `action`.
///
/// - `prefix_rewrite` replaces the part of the path the route matched: the prefix for
///   `Prefix` / `PathSeparatedPrefix` (compared case-insensitively when the route is), the
///   whole path for `Exact` and `Regex` (as Envoy does).
/// - otherwise `regex_rewrite` replaces every match in the path; `\N` in the substitution
///   refers to capture group N.
///
/// The query string is kept as it is. Without a rewrite the input comes back unchanged.
pub fn rewrite_path(action: &ForwardAction, matched: &RouteMatch, path_and_query: &str) -> String {
    let (path, query) = split_query(path_and_query);
    let rewritten = if let Some(replacement) = &action.prefix_rewrite {
        replace_matched_prefix(matched, path, replacement)
    } else {
        action
            .regex_rewrite
            .as_ref()
            .map(|rewrite| apply_regex_rewrite(rewrite, path))
    };
    match (rewritten, query) {
        (None, _) => path_and_query.to_owned(),
        (Some(path), None) => path,
        (Some(path), Some(query)) => format!("{path}?{query}"),
    }
}

/// `path` with the part `matched` accepted replaced by `replacement`; `None` when the
/// route's prefix is not actually at the start of `path`.
pub(crate) fn replace_matched_prefix(
    matched: &RouteMatch,
    path: &str,
    replacement: &str,
) -> Option<String> {
    match &matched.path {
        PathMatch::Prefix(prefix) | PathMatch::PathSeparatedPrefix(prefix) => {
            if !starts_with(path, prefix, matched.case_sensitive) {
                return None;
            }
            let rest = path.get(prefix.len()..)?;
            Some(format!("{replacement}{rest}"))
        }
        PathMatch::Exact(_) | PathMatch::Regex(_) => Some(replacement.to_owned()),
    }
}

/// Splits `path?query` at the first `?`.
pub(crate) fn split_query(path_and_query: &str) -> (&str, Option<&str>) {
    match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    }
}

fn apply_regex_rewrite(rewrite: &RegexRewrite, path: &str) -> String {
    let substitution = envoy_substitution_to_regex(&rewrite.substitution);
    rewrite
        .pattern
        .replace_all(path, substitution.as_str())
        .into_owned()
}

/// Converts an RE2-style substitution (`\1`, `\\`) into the regex crate's (`${1}`, `$$`).
fn envoy_substitution_to_regex(substitution: &str) -> String {
    let mut converted = String::with_capacity(substitution.len() + 8);
    let mut chars = substitution.chars().peekable();
    while let Some(current) = chars.next() {
        match current {
            '$' => converted.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(digit) if digit.is_ascii_digit() => {
                    chars.next();
                    converted.push_str("${");
                    converted.push(digit);
                    converted.push('}');
                }
                Some('\\') => {
                    chars.next();
                    converted.push('\\');
                }
                _ => converted.push('\\'),
            },
            other => converted.push(other),
        }
    }
    converted
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;
    use crate::model::ClusterTarget;
    use crate::router::full_match_regex;

    fn action(prefix_rewrite: Option<&str>, regex_rewrite: Option<(&str, &str)>) -> ForwardAction {
        ForwardAction {
            target: ClusterTarget::Single("c".into()),
            timeout: None,
            retry_policy: None,
            prefix_rewrite: prefix_rewrite.map(str::to_owned),
            regex_rewrite: regex_rewrite.map(|(pattern, substitution)| RegexRewrite {
                pattern: Regex::new(pattern).unwrap(),
                substitution: substitution.into(),
            }),
            host_rewrite: None,
            hash_policy: Vec::new(),
            mirrors: Vec::new(),
        }
    }

    fn matched(path: PathMatch, case_sensitive: bool) -> RouteMatch {
        RouteMatch {
            path,
            case_sensitive,
            headers: Vec::new(),
            query_parameters: Vec::new(),
        }
    }

    #[test]
    fn prefix_rewrite_replaces_the_matched_prefix_and_keeps_the_query() {
        let forward = action(Some("/v2"), None);
        let prefix = matched(PathMatch::Prefix("/api".into()), true);
        assert_eq!(
            rewrite_path(&forward, &prefix, "/api/items?x=1"),
            "/v2/items?x=1"
        );
        assert_eq!(rewrite_path(&forward, &prefix, "/api"), "/v2");
        let strip = action(Some("/"), None);
        let prefix = matched(PathMatch::Prefix("/api/".into()), true);
        assert_eq!(rewrite_path(&strip, &prefix, "/api/items"), "/items");
    }

    #[test]
    fn prefix_rewrite_honours_case_insensitive_matches() {
        let forward = action(Some("/v2"), None);
        let prefix = matched(PathMatch::Prefix("/api".into()), false);
        assert_eq!(rewrite_path(&forward, &prefix, "/API/items"), "/v2/items");
        let separated = matched(PathMatch::PathSeparatedPrefix("/api".into()), false);
        assert_eq!(rewrite_path(&forward, &separated, "/Api/x?q"), "/v2/x?q");
        let sensitive = matched(PathMatch::Prefix("/api".into()), true);
        assert_eq!(
            rewrite_path(&forward, &sensitive, "/API/items"),
            "/API/items"
        );
    }

    #[test]
    fn prefix_rewrite_on_exact_and_regex_replaces_the_whole_path() {
        let forward = action(Some("/new"), None);
        let exact = matched(PathMatch::Exact("/old".into()), true);
        assert_eq!(rewrite_path(&forward, &exact, "/old?a=b"), "/new?a=b");
        let regex = matched(PathMatch::Regex(full_match_regex("/o.d").unwrap()), true);
        assert_eq!(rewrite_path(&forward, &regex, "/old"), "/new");
    }

    #[test]
    fn regex_rewrite_replaces_every_match_with_group_references() {
        let any = matched(PathMatch::Prefix("/".into()), true);
        let forward = action(None, Some((r"^/service/([^/]+)(/.*)$", r"\2/instance/\1")));
        assert_eq!(
            rewrite_path(&forward, &any, "/service/foo/v1/api?x=/service/a/b"),
            "/v1/api/instance/foo?x=/service/a/b"
        );
        let every = action(None, Some(("o", "0")));
        assert_eq!(rewrite_path(&every, &any, "/foo/boo?o=o"), "/f00/b00?o=o");
        let literal = action(None, Some(("x", r"$1\\\q")));
        assert_eq!(rewrite_path(&literal, &any, "/x"), r"/$1\\q");
    }

    #[test]
    fn no_rewrite_leaves_the_path_unchanged() {
        let any = matched(PathMatch::Prefix("/".into()), true);
        assert_eq!(rewrite_path(&action(None, None), &any, "/a/b?c"), "/a/b?c");
    }
}
