//! `request_headers_to_add` / `_remove` and `response_headers_to_add` / `_remove`.

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValueOption as ProtoHeaderValueOption, header_value_option::HeaderAppendAction,
};
use outrigger_mesh::model::{HeaderMutations, HeaderValueOption};
use outrigger_mesh::router::{HeaderDirection, HeaderFormat};

use super::matchers::header_name;
use super::{AtField, FieldError};

/// The four header mutation lists of a route configuration, virtual host, route or weighted
/// cluster entry.
pub(crate) struct HeaderFields<'a> {
    pub request_add: &'a [ProtoHeaderValueOption],
    pub request_remove: &'a [String],
    pub response_add: &'a [ProtoHeaderValueOption],
    pub response_remove: &'a [String],
}

pub(crate) fn header_mutations(fields: HeaderFields<'_>) -> Result<HeaderMutations, FieldError> {
    Ok(HeaderMutations {
        request_add: header_options(fields.request_add, HeaderDirection::Request)
            .at("request_headers_to_add")?,
        request_remove: header_removals(fields.request_remove).at("request_headers_to_remove")?,
        response_add: header_options(fields.response_add, HeaderDirection::Response)
            .at("response_headers_to_add")?,
        response_remove: header_removals(fields.response_remove)
            .at("response_headers_to_remove")?,
    })
}

fn header_options(
    options: &[ProtoHeaderValueOption],
    direction: HeaderDirection,
) -> Result<Vec<HeaderValueOption>, FieldError> {
    options
        .iter()
        .enumerate()
        .map(|(index, option)| header_option(option, direction).at_index("", index))
        .collect()
}

#[allow(deprecated)] // `append` is deprecated in favour of `append_action`, but still honoured.
fn header_option(
    option: &ProtoHeaderValueOption,
    direction: HeaderDirection,
) -> Result<HeaderValueOption, FieldError> {
    let header = option
        .header
        .as_ref()
        .ok_or_else(|| FieldError::new("header", "is required"))?;
    let name = header_name(&header.key).at("header.key")?;
    if name.starts_with(':') {
        return Err(FieldError::new(
            "header.key",
            format!("pseudo-header {name} cannot be modified"),
        ));
    }
    let (field, value) = if header.raw_value.is_empty() {
        ("header.value", header.value.clone())
    } else {
        let value = String::from_utf8(header.raw_value.clone())
            .map_err(|_| FieldError::new("header.raw_value", "is not valid UTF-8"))?;
        ("header.raw_value", value)
    };
    // Envoy formats added values: `%…%` operators are filled in per request, `%%` is a `%`.
    let value =
        HeaderFormat::parse(&value, direction).map_err(|reason| FieldError::new(field, reason))?;
    // Envoy: the deprecated `append`, when set, wins over `append_action`.
    let append = match &option.append {
        Some(append) => append.value,
        None => match HeaderAppendAction::try_from(option.append_action) {
            Ok(HeaderAppendAction::AppendIfExistsOrAdd) => true,
            Ok(HeaderAppendAction::OverwriteIfExistsOrAdd) => false,
            Ok(action) => {
                return Err(FieldError::new(
                    "append_action",
                    format!("{} is not supported", action.as_str_name()),
                ));
            }
            Err(_) => {
                return Err(FieldError::new(
                    "append_action",
                    format!("unknown value {}", option.append_action),
                ));
            }
        },
    };
    Ok(HeaderValueOption {
        name,
        value,
        append,
    })
}

fn header_removals(names: &[String]) -> Result<Vec<String>, FieldError> {
    names
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let name = header_name(name).at_index("", index)?;
            if name.starts_with(':') {
                return Err(
                    FieldError::here(format!("pseudo-header {name} cannot be removed"))
                        .within(&format!("[{index}]")),
                );
            }
            Ok(name)
        })
        .collect()
}
