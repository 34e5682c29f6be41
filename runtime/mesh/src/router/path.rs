//! Request path normalisation before routing.

use thiserror::Error;

/// Why a request path cannot be normalised; such a request is answered 400.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("the request path must start with '/'")]
    NotAbsolute,
    #[error("the request path contains a NUL byte (raw or as %00) at byte {position}")]
    Nul { position: usize },
    #[error("the request path contains a control character at byte {position}")]
    ControlCharacter { position: usize },
    #[error("the request path contains a fragment ('#') at byte {position}")]
    Fragment { position: usize },
    #[error("the request path has an invalid percent escape at byte {position}")]
    InvalidPercentEscape { position: usize },
}

/// Normalises a request path (without its query string) the way Envoy does with
/// `normalize_path: true` and `merge_slashes: true`, so that routing sees one spelling of
/// each path.
///
/// The rule, applied in this order:
/// 1. The path must start with `/`. NUL (raw or `%00`), other control characters
///    (0x00–0x1F, 0x7F), `#` and malformed percent escapes (`%zz`, a trailing `%`) are errors.
/// 2. Percent escapes of unreserved characters (`A–Z a–z 0–9 - . _ ~`, RFC 3986 2.3) are
///    decoded; every other escape is kept with its hex upper-cased (`%2f` → `%2F`). In
///    particular an encoded slash `%2F` or backslash `%5C` is never decoded, so `..%2F` can
///    not become a path separator.
/// 3. A raw `\` becomes `/` (as Envoy's URL canonicaliser does), and characters that may not
///    appear raw in a path (space, `"`, `<`, `>`, `^`, `` ` ``, `{`, `|`, `}`, `?`, non-ASCII)
///    are percent-encoded.
/// 4. Runs of `/` are merged into one.
/// 5. `.` and `..` segments are removed (RFC 3986 5.2.4); `..` at the root stays at the root.
///    A path ending in `/`, `/.` or `/..` keeps a trailing `/`.
pub fn normalize_path(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let canonical = canonicalize_characters(path)?;
    Ok(remove_dot_segments(&canonical))
}

/// Steps 1–3: validates characters and canonicalises escapes; the result is ASCII.
fn canonicalize_characters(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut canonical = String::with_capacity(path.len());
    let mut position = 0;
    while let Some(&byte) = bytes.get(position) {
        match byte {
            0 => return Err(PathError::Nul { position }),
            0x01..=0x1f | 0x7f => return Err(PathError::ControlCharacter { position }),
            b'#' => return Err(PathError::Fragment { position }),
            b'%' => {
                let decoded = bytes
                    .get(position + 1..position + 3)
                    .and_then(decode_hex_pair)
                    .ok_or(PathError::InvalidPercentEscape { position })?;
                if decoded == 0 {
                    return Err(PathError::Nul { position });
                }
                if is_unreserved(decoded) {
                    canonical.push(char::from(decoded));
                } else {
                    push_escaped(&mut canonical, decoded);
                }
                position += 3;
                continue;
            }
            b'\\' => canonical.push('/'),
            _ if is_raw_path_byte(byte) => canonical.push(char::from(byte)),
            _ => push_escaped(&mut canonical, byte),
        }
        position += 1;
    }
    Ok(canonical)
}

/// Steps 4–5: merges slashes and resolves dot segments.
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let mut segments = path.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        match segment {
            "" | "." => {}
            ".." => {
                kept.pop();
            }
            _ => kept.push(segment),
        }
        if is_last {
            trailing_slash = matches!(segment, "" | "." | "..");
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for segment in &kept {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if trailing_slash || kept.is_empty() {
        normalized.push('/');
    }
    normalized
}

/// Decodes two hex digits (`[b'2', b'F']` → `0x2F`); anything else is `None`.
pub(crate) fn decode_hex_pair(pair: &[u8]) -> Option<u8> {
    let [high, low] = pair else {
        return None;
    };
    Some(hex_value(*high)? << 4 | hex_value(*low)?)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

fn push_escaped(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

/// RFC 3986 2.3 unreserved characters.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Bytes that may appear unescaped in a path: `pchar` and `/` (RFC 3986 3.3).
fn is_raw_path_byte(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'/' | b':'
                | b'@'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(path: &str) -> String {
        normalize_path(path).unwrap()
    }

    #[test]
    fn encoded_slash_never_becomes_a_separator() {
        assert_eq!(normalized("/a/..%2Fb"), "/a/..%2Fb");
        assert_eq!(normalized("/a/..%2fb"), "/a/..%2Fb");
        assert_eq!(normalized("/a/..%5cb"), "/a/..%5Cb");
    }

    #[test]
    fn encoded_dots_are_decoded_then_resolved() {
        assert_eq!(normalized("/a/%2e%2e/b"), "/b");
        assert_eq!(normalized("/a/%2E/b"), "/a/b");
    }

    #[test]
    fn slashes_are_merged() {
        assert_eq!(normalized("//a///b"), "/a/b");
        assert_eq!(normalized("/a//"), "/a/");
        assert_eq!(normalized("//"), "/");
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(normalized("/a/./b/../c"), "/a/c");
        assert_eq!(normalized("/a/b/."), "/a/b/");
        assert_eq!(normalized("/a/b/.."), "/a/");
        assert_eq!(normalized("/../../a"), "/a");
        assert_eq!(normalized("/.."), "/");
        assert_eq!(normalized("/"), "/");
        assert_eq!(normalized("/a/..b/c."), "/a/..b/c.");
    }

    #[test]
    fn unreserved_escapes_are_decoded_and_others_uppercased() {
        assert_eq!(normalized("/%7Euser"), "/~user");
        assert_eq!(normalized("/%41%62%2d%5f"), "/Ab-_");
        assert_eq!(normalized("/a%3fb%20c"), "/a%3Fb%20c");
    }

    #[test]
    fn backslash_becomes_slash_and_unsafe_bytes_are_escaped() {
        assert_eq!(normalized("/a\\..\\b"), "/b");
        assert_eq!(normalized("/a b\"é"), "/a%20b%22%C3%A9");
        assert_eq!(normalized("/a:b@c;d=e,f"), "/a:b@c;d=e,f");
    }

    #[test]
    fn invalid_paths_are_rejected() {
        assert_eq!(normalize_path(""), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(
            normalize_path("/a%zz"),
            Err(PathError::InvalidPercentEscape { position: 2 })
        );
        assert_eq!(
            normalize_path("/a%4"),
            Err(PathError::InvalidPercentEscape { position: 2 })
        );
        assert_eq!(normalize_path("/a\0"), Err(PathError::Nul { position: 2 }));
        assert_eq!(normalize_path("/a%00"), Err(PathError::Nul { position: 2 }));
        assert_eq!(
            normalize_path("/a\nb"),
            Err(PathError::ControlCharacter { position: 2 })
        );
        assert_eq!(
            normalize_path("/a\x7f"),
            Err(PathError::ControlCharacter { position: 2 })
        );
        assert_eq!(
            normalize_path("/a#frag"),
            Err(PathError::Fragment { position: 2 })
        );
    }

    #[test]
    fn error_messages_are_clear() {
        assert_eq!(
            PathError::InvalidPercentEscape { position: 3 }.to_string(),
            "the request path has an invalid percent escape at byte 3"
        );
    }
}
