//! Request bodies: read under `--max-body-size`, decoded as JSON with errors that name the problem.

use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if let Some(size) = declared.filter(|size| *size > limit) {
        return Err(ApiError::BodyTooLarge { size, limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        if std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
        {
            ApiError::BodyTooLarge {
                size: declared.unwrap_or(limit + 1),
                limit,
            }
        } else {
            ApiError::malformed(format!("failed reading HTTP body: {error}"))
        }
    })
}

/// Decodes a JSON body; an empty or malformed body is a 400 naming the problem.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::malformed(
            "failed deserializing HTTP body: the body is empty",
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|error| ApiError::malformed(format!("failed deserializing HTTP body: {error}")))
}

/// Decodes a body that must be a JSON object (serde would also accept a positional array).
pub fn decode_json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    if first.is_some_and(|byte| *byte != b'{') {
        return Err(ApiError::malformed(
            "failed deserializing HTTP body: expected a JSON object",
        ));
    }
    decode_json(bytes)
}

/// Removes insignificant whitespace from valid JSON text, keeping key order and number text
/// exactly as the app sent them.
pub fn compact_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for character in raw.chars() {
        if in_string {
            out.push(character);
            if escaped {
                escaped = false;
            } else if character == '\\' {
                escaped = true;
            } else if character == '"' {
                in_string = false;
            }
        } else if character == '"' {
            in_string = true;
            out.push(character);
        } else if !character.is_ascii_whitespace() {
            out.push(character);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_json_keeps_strings_and_order() {
        assert_eq!(
            compact_json("{ \"b\" : 1.50, \"a\": \"x \\\" y\" ,\n \"c\": [1, 2] }"),
            "{\"b\":1.50,\"a\":\"x \\\" y\",\"c\":[1,2]}"
        );
    }
}
