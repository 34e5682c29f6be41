//! Envoy's `StringMatcher` and the small ASCII case-insensitive helpers the matchers share.

use regex::Regex;

use crate::model::{StringMatcher, StringPattern};

/// Compiles `pattern` so that it only matches a whole input, as Envoy's `safe_regex` matchers
/// do (RE2 full match).
///
/// The `regex` crate has no full-match call, and checking that an unanchored match spans the
/// input is wrong for alternations (`a|ab` finds `a` in `ab`). Regexes in `PathMatch::Regex`
/// and `StringPattern::Regex` should therefore be compiled with this function; the matchers
/// then only check that the (anchored) match covers the input.
pub fn full_match_regex(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// Whether `regex` matches the whole of `input` (exact for regexes from [`full_match_regex`]).
pub(crate) fn regex_full_match(regex: &Regex, input: &str) -> bool {
    regex
        .find(input)
        .is_some_and(|found| found.start() == 0 && found.end() == input.len())
}

/// Envoy's `StringMatcher`: `ignore_case` applies to every kind except `Regex`.
pub fn string_matches(matcher: &StringMatcher, value: &str) -> bool {
    let ignore_case = matcher.ignore_case;
    match &matcher.pattern {
        StringPattern::Exact(expected) => {
            if ignore_case {
                value.eq_ignore_ascii_case(expected)
            } else {
                value == expected
            }
        }
        StringPattern::Prefix(prefix) => starts_with(value, prefix, !ignore_case),
        StringPattern::Suffix(suffix) => ends_with(value, suffix, !ignore_case),
        StringPattern::Contains(needle) => {
            if ignore_case {
                contains_ignore_ascii_case(value, needle)
            } else {
                value.contains(needle.as_str())
            }
        }
        StringPattern::Regex(regex) => regex_full_match(regex, value),
    }
}

/// `value.starts_with(prefix)`, ASCII case-insensitively unless `case_sensitive`.
pub(crate) fn starts_with(value: &str, prefix: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        return value.starts_with(prefix);
    }
    value
        .as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// `value.ends_with(suffix)`, ASCII case-insensitively unless `case_sensitive`.
pub(crate) fn ends_with(value: &str, suffix: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        return value.ends_with(suffix);
    }
    value
        .len()
        .checked_sub(suffix.len())
        .and_then(|start| value.as_bytes().get(start..))
        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes()))
}

fn contains_ignore_ascii_case(value: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    value
        .as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(pattern: StringPattern, ignore_case: bool) -> StringMatcher {
        StringMatcher {
            pattern,
            ignore_case,
        }
    }

    #[test]
    fn exact_prefix_suffix_contains_honour_ignore_case() {
        let exact = matcher(StringPattern::Exact("Foo".into()), false);
        assert!(string_matches(&exact, "Foo"));
        assert!(!string_matches(&exact, "foo"));
        let exact = matcher(StringPattern::Exact("Foo".into()), true);
        assert!(string_matches(&exact, "fOO"));

        let prefix = matcher(StringPattern::Prefix("Ab".into()), true);
        assert!(string_matches(&prefix, "abc"));
        assert!(!string_matches(&prefix, "a"));
        let suffix = matcher(StringPattern::Suffix("Yz".into()), false);
        assert!(string_matches(&suffix, "xYz"));
        assert!(!string_matches(&suffix, "xyz"));
        let contains = matcher(StringPattern::Contains("MID".into()), true);
        assert!(string_matches(&contains, "a-mid-b"));
        assert!(!string_matches(&contains, "a-mi-d"));
    }

    #[test]
    fn regex_is_a_full_match_and_ignores_ignore_case() {
        let regex = matcher(
            StringPattern::Regex(full_match_regex("a|ab").unwrap()),
            true,
        );
        assert!(string_matches(&regex, "ab"));
        assert!(string_matches(&regex, "a"));
        assert!(!string_matches(&regex, "abc"));
        assert!(!string_matches(&regex, "AB"));
    }

    #[test]
    fn case_insensitive_helpers_handle_short_and_multibyte_input() {
        assert!(!starts_with("é", "e", false));
        assert!(!ends_with("a", "ab", false));
        assert!(ends_with("xAB", "ab", false));
    }
}
