//! Regexes, string, header and query-parameter matchers, fractional percents.

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher as ProtoHeaderMatcher, QueryParameterMatcher as ProtoQueryParameterMatcher,
    header_matcher::HeaderMatchSpecifier, query_parameter_matcher::QueryParameterMatchSpecifier,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, RegexMatcher, StringMatcher as ProtoStringMatcher,
    string_matcher::MatchPattern,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use outrigger_mesh::model::{
    HeaderMatcher, HeaderRule, QueryParameterMatcher, RegexRewrite, StringMatcher, StringPattern,
};
use regex::Regex;

use super::{AtField, FieldError};

/// Compiles a regex as written (for searching, e.g. `regex_rewrite`).
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, FieldError> {
    if pattern.is_empty() {
        return Err(FieldError::new("regex", "must not be empty"));
    }
    Regex::new(pattern).map_err(|error| FieldError::here(error.to_string()))
}

/// Compiles a regex that must match a whole value (RE2 `FullMatch`, as Envoy matches), so that
/// `is_match` on the result is a full match.
pub(crate) fn compile_full_match(pattern: &str) -> Result<Regex, FieldError> {
    // Compiled as written first, so a syntax error points into the pattern the user wrote.
    compile_regex(pattern)?;
    outrigger_mesh::router::full_match_regex(pattern)
        .map_err(|error| FieldError::here(error.to_string()))
}

pub(crate) fn full_match_regex(matcher: &RegexMatcher) -> Result<Regex, FieldError> {
    compile_full_match(&matcher.regex)
}

pub(crate) fn regex_rewrite(rewrite: &RegexMatchAndSubstitute) -> Result<RegexRewrite, FieldError> {
    let pattern = rewrite
        .pattern
        .as_ref()
        .ok_or_else(|| FieldError::new("pattern", "is required"))?;
    let pattern = compile_regex(&pattern.regex).at("pattern")?;
    Ok(RegexRewrite {
        pattern,
        substitution: rewrite.substitution.clone(),
    })
}

/// An Envoy `StringMatcher`.
pub(crate) fn string_matcher(matcher: &ProtoStringMatcher) -> Result<StringMatcher, FieldError> {
    let pattern = match &matcher.match_pattern {
        None => return Err(FieldError::here("match_pattern is required")),
        Some(MatchPattern::Exact(value)) => StringPattern::Exact(value.clone()),
        Some(MatchPattern::Prefix(value)) => {
            StringPattern::Prefix(non_empty(value).at("prefix")?.to_string())
        }
        Some(MatchPattern::Suffix(value)) => {
            StringPattern::Suffix(non_empty(value).at("suffix")?.to_string())
        }
        Some(MatchPattern::Contains(value)) => {
            StringPattern::Contains(non_empty(value).at("contains")?.to_string())
        }
        Some(MatchPattern::SafeRegex(regex)) => {
            StringPattern::Regex(full_match_regex(regex).at("safe_regex")?)
        }
        Some(MatchPattern::Custom(extension)) => {
            return Err(FieldError::new(
                "custom",
                format!("custom string matcher {} is not supported", extension.name),
            ));
        }
    };
    Ok(StringMatcher {
        pattern,
        ignore_case: matcher.ignore_case,
    })
}

fn non_empty(value: &str) -> Result<&str, FieldError> {
    if value.is_empty() {
        Err(FieldError::here("must not be empty"))
    } else {
        Ok(value)
    }
}

fn case_sensitive(pattern: StringPattern) -> StringMatcher {
    StringMatcher {
        pattern,
        ignore_case: false,
    }
}

/// An Envoy route `HeaderMatcher`, including the deprecated direct match fields.
#[allow(deprecated)] // `exact_match` etc. are deprecated but still sent by control planes.
pub(crate) fn header_matcher(matcher: &ProtoHeaderMatcher) -> Result<HeaderMatcher, FieldError> {
    let name = header_name(&matcher.name).at("name")?;
    let rule = match &matcher.header_match_specifier {
        // Envoy: a matcher without a specifier matches when the header is present.
        None => HeaderRule::Present(true),
        Some(HeaderMatchSpecifier::PresentMatch(present)) => HeaderRule::Present(*present),
        Some(HeaderMatchSpecifier::ExactMatch(value)) => {
            HeaderRule::Value(case_sensitive(StringPattern::Exact(value.clone())))
        }
        Some(HeaderMatchSpecifier::PrefixMatch(value)) => HeaderRule::Value(case_sensitive(
            StringPattern::Prefix(non_empty(value).at("prefix_match")?.to_string()),
        )),
        Some(HeaderMatchSpecifier::SuffixMatch(value)) => HeaderRule::Value(case_sensitive(
            StringPattern::Suffix(non_empty(value).at("suffix_match")?.to_string()),
        )),
        Some(HeaderMatchSpecifier::ContainsMatch(value)) => HeaderRule::Value(case_sensitive(
            StringPattern::Contains(non_empty(value).at("contains_match")?.to_string()),
        )),
        Some(HeaderMatchSpecifier::SafeRegexMatch(regex)) => HeaderRule::Value(case_sensitive(
            StringPattern::Regex(full_match_regex(regex).at("safe_regex_match")?),
        )),
        Some(HeaderMatchSpecifier::RangeMatch(range)) => {
            if range.start >= range.end {
                return Err(FieldError::new(
                    "range_match",
                    format!("start {} must be less than end {}", range.start, range.end),
                ));
            }
            HeaderRule::Range {
                start: range.start,
                end: range.end,
            }
        }
        Some(HeaderMatchSpecifier::StringMatch(string)) => {
            HeaderRule::Value(string_matcher(string).at("string_match")?)
        }
    };
    Ok(HeaderMatcher {
        name,
        rule,
        invert: matcher.invert_match,
    })
}

/// An Envoy `QueryParameterMatcher`.
pub(crate) fn query_parameter_matcher(
    matcher: &ProtoQueryParameterMatcher,
) -> Result<QueryParameterMatcher, FieldError> {
    if matcher.name.is_empty() {
        return Err(FieldError::new("name", "must not be empty"));
    }
    let value = match &matcher.query_parameter_match_specifier {
        None | Some(QueryParameterMatchSpecifier::PresentMatch(_)) => None,
        Some(QueryParameterMatchSpecifier::StringMatch(string)) => {
            Some(string_matcher(string).at("string_match")?)
        }
    };
    Ok(QueryParameterMatcher {
        name: matcher.name.clone(),
        value,
    })
}

/// A header name as the model keeps it: validated and lower-case.
pub(crate) fn header_name(name: &str) -> Result<String, FieldError> {
    if name.is_empty() {
        return Err(FieldError::here("must not be empty"));
    }
    let valid = name
        .strip_prefix(':')
        .unwrap_or(name)
        .bytes()
        .all(|byte| byte.is_ascii_graphic() && !b"\"(),/;<=>?@[\\]{}".contains(&byte));
    if !valid {
        return Err(FieldError::here(format!("invalid header name {name:?}")));
    }
    Ok(name.to_ascii_lowercase())
}

/// A `FractionalPercent` in millionths, clamped to 100% as Envoy does.
pub(crate) fn per_million(percent: &FractionalPercent) -> Result<u32, FieldError> {
    let scale: u64 = match DenominatorType::try_from(percent.denominator) {
        Ok(DenominatorType::Hundred) => 10_000,
        Ok(DenominatorType::TenThousand) => 100,
        Ok(DenominatorType::Million) => 1,
        Err(_) => {
            return Err(FieldError::new(
                "denominator",
                format!("unknown denominator {}", percent.denominator),
            ));
        }
    };
    let value = (u64::from(percent.numerator) * scale).min(1_000_000);
    u32::try_from(value).map_err(|_| FieldError::new("numerator", "out of range"))
}
