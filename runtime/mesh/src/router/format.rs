//! Envoy's command operators in added header values (`%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%`,
//! `%REQ(x-user)%`, …), parsed once when the route is accepted and filled in per request.
//!
//! As in Envoy, `%%` is a literal `%`, a `%` that opens no operator rejects the configuration,
//! and so does an operator this data plane cannot fill in (rather than sending it literally).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::SystemTime;

use http::HeaderMap;

/// The operators understood, for error messages.
const SUPPORTED: &str = "%%, %HOSTNAME%, %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%, \
                         %START_TIME%, %REQ(header)% (request headers only)";

/// A parsed header value: literal text and operators.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderFormat {
    parts: Vec<FormatPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FormatPart {
    Literal(String),
    /// The machine's host name.
    Hostname,
    /// The calling client's IP address.
    DownstreamRemoteAddressWithoutPort,
    /// When the request started, `2026-11-22T13:05:01.123Z`.
    StartTime,
    /// A request header's first value (or the alternative header's), cut to `max_length`.
    RequestHeader {
        name: String,
        alternative: Option<String>,
        max_length: Option<usize>,
    },
}

/// Where the header is added, which decides the operators allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderDirection {
    Request,
    Response,
}

/// What a request offers the operators.
#[derive(Debug, Clone, Copy)]
pub struct FormatContext<'a> {
    pub request_headers: Option<&'a HeaderMap>,
    pub source_ip: Option<IpAddr>,
    pub start_time: SystemTime,
}

impl HeaderFormat {
    /// A value with no operators.
    pub fn literal(value: &str) -> Self {
        Self {
            parts: vec![FormatPart::Literal(value.to_string())],
        }
    }

    /// Parses `value`; the error says which operator is wrong and why.
    pub fn parse(value: &str, direction: HeaderDirection) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = value;
        while let Some(start) = rest.find('%') {
            literal.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            if let Some(tail) = after.strip_prefix('%') {
                literal.push('%');
                rest = tail;
                continue;
            }
            let Some(end) = after.find('%') else {
                return Err(format!(
                    "{value:?}: unterminated operator at position {start} (a literal % is \
                     written %%)"
                ));
            };
            let operator = parse_operator(&after[..end], direction)
                .map_err(|reason| format!("{value:?}: {reason}"))?;
            if !literal.is_empty() {
                parts.push(FormatPart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(operator);
            rest = &after[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(FormatPart::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// The value for one request; empty when every part came out empty. A value without
    /// operators, the usual case, is borrowed rather than copied for every request.
    pub fn render(&self, context: &FormatContext<'_>) -> Cow<'_, str> {
        match self.parts.as_slice() {
            [] => return Cow::Borrowed(""),
            [FormatPart::Literal(text)] => return Cow::Borrowed(text),
            _ => {}
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                FormatPart::Literal(text) => out.push_str(text),
                FormatPart::Hostname => out.push_str(hostname()),
                FormatPart::DownstreamRemoteAddressWithoutPort => {
                    if let Some(ip) = context.source_ip {
                        out.push_str(&ip.to_string());
                    }
                }
                FormatPart::StartTime => {
                    out.push_str(&humantime::format_rfc3339_millis(context.start_time).to_string())
                }
                FormatPart::RequestHeader {
                    name,
                    alternative,
                    max_length,
                } => {
                    let headers = context.request_headers;
                    let value = headers
                        .and_then(|headers| headers.get(name.as_str()))
                        .or_else(|| {
                            let alternative = alternative.as_deref()?;
                            headers?.get(alternative)
                        })
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("");
                    match max_length {
                        Some(max) => out.extend(value.chars().take(*max)),
                        None => out.push_str(value),
                    }
                }
            }
        }
        Cow::Owned(out)
    }
}

fn parse_operator(text: &str, direction: HeaderDirection) -> Result<FormatPart, String> {
    match text {
        "HOSTNAME" => return Ok(FormatPart::Hostname),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            return Ok(FormatPart::DownstreamRemoteAddressWithoutPort);
        }
        "START_TIME" => return Ok(FormatPart::StartTime),
        _ => {}
    }
    if let Some(arguments) = text.strip_prefix("REQ(") {
        if direction == HeaderDirection::Response {
            return Err("%REQ(...)% is supported in request headers only".into());
        }
        return request_header(arguments);
    }
    let name = text.split('(').next().unwrap_or(text);
    Err(format!(
        "%{name}% is not supported (supported: {SUPPORTED})"
    ))
}

/// `name?alternative)` or `name)` followed by an optional `:max_length`.
fn request_header(arguments: &str) -> Result<FormatPart, String> {
    let Some((names, after)) = arguments.split_once(')') else {
        return Err("%REQ(...)% is missing its closing parenthesis".into());
    };
    let max_length = match after {
        "" => None,
        _ => {
            let digits = after
                .strip_prefix(':')
                .ok_or_else(|| format!("unexpected {after:?} after %REQ(...)%"))?;
            let max = digits
                .parse::<usize>()
                .map_err(|_| format!("%REQ(...)% length {digits:?} is not a number"))?;
            Some(max)
        }
    };
    let (name, alternative) = match names.split_once('?') {
        Some((name, alternative)) => (name, Some(alternative)),
        None => (names, None),
    };
    let valid = |name: &str| http::HeaderName::from_bytes(name.as_bytes()).is_ok();
    if !valid(name) || !alternative.is_none_or(valid) {
        return Err(format!("%REQ({names})% does not name a header"));
    }
    Ok(FormatPart::RequestHeader {
        name: name.to_ascii_lowercase(),
        alternative: alternative.map(str::to_ascii_lowercase),
        max_length,
    })
}

/// The kernel's host name, read once (what `gethostname` answers).
fn hostname() -> &'static str {
    static HOSTNAME: OnceLock<String> = OnceLock::new();
    HOSTNAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn render(value: &str, headers: &HeaderMap) -> String {
        let format = HeaderFormat::parse(value, HeaderDirection::Request).unwrap();
        format
            .render(&FormatContext {
                request_headers: Some(headers),
                source_ip: Some("10.1.2.3".parse().unwrap()),
                start_time: UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            })
            .into_owned()
    }

    #[test]
    fn literals_and_escaped_percent_pass_through() {
        let headers = HeaderMap::new();
        assert_eq!(render("plain", &headers), "plain");
        assert_eq!(render("100%%", &headers), "100%");
        assert_eq!(render("%%a%%b%%", &headers), "%a%b%");
        assert_eq!(render("", &headers), "");
    }

    #[test]
    fn operators_are_filled_in_from_the_request() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", "jason".parse().unwrap());
        headers.insert("x-fallback", "other".parse().unwrap());
        assert_eq!(
            render("ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%;", &headers),
            "ip=10.1.2.3;"
        );
        assert_eq!(render("%REQ(X-User)%", &headers), "jason");
        assert_eq!(render("%REQ(x-user):3%", &headers), "jas");
        assert_eq!(render("%REQ(x-missing?x-fallback)%", &headers), "other");
        assert_eq!(render("%REQ(x-missing)%", &headers), "");
        assert_eq!(render("%START_TIME%", &headers), "2026-11-18T11:06:40.123Z");
        assert_eq!(render("%HOSTNAME%", &headers), hostname());
    }

    #[test]
    fn bad_operators_are_refused_with_the_reason() {
        let request = HeaderDirection::Request;
        let error = HeaderFormat::parse("50%", request).unwrap_err();
        assert!(
            error.contains("unterminated operator at position 2"),
            "{error}"
        );
        let error = HeaderFormat::parse("%UPSTREAM_METADATA([\"a\"])%", request).unwrap_err();
        assert!(
            error.contains("%UPSTREAM_METADATA% is not supported"),
            "{error}"
        );
        let error = HeaderFormat::parse("%REQ(x-user):ten%", request).unwrap_err();
        assert!(error.contains("is not a number"), "{error}");
        let error = HeaderFormat::parse("%REQ(x-user%", request).unwrap_err();
        assert!(error.contains("missing its closing parenthesis"), "{error}");
        let error = HeaderFormat::parse("%REQ(x-user)junk%", request).unwrap_err();
        assert!(
            error.contains("unexpected \"junk\" after %REQ(...)%"),
            "{error}"
        );
        let error = HeaderFormat::parse("%REQ(bad header)%", request).unwrap_err();
        assert!(error.contains("does not name a header"), "{error}");
        let error = HeaderFormat::parse("%REQ(x-user)%", HeaderDirection::Response).unwrap_err();
        assert!(error.contains("request headers only"), "{error}");
    }
}
