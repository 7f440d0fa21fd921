//! Field-by-field extraction from the request body with Anthropic's error spelling:
//! `<path>: <reason>`, the path dotted as Anthropic writes it (`messages.0.content.1.type`).

use crate::error::{FieldProblem, GatewayError};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::fmt::Write as _;

pub(super) fn required<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &str,
) -> Result<T, GatewayError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Err(field_error(name, FieldProblem::Missing, "Field required")),
        Some(value) => typed(name, value),
    }
}

pub(super) fn optional<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<T>, GatewayError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => typed(name, value).map(Some),
    }
}

/// Deserializes `value`, naming the exact nested field on failure (`messages.0.content.1`).
pub(super) fn typed<T: DeserializeOwned>(path: &str, value: Value) -> Result<T, GatewayError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut at = path.to_owned();
        for segment in err.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    let _ = write!(at, ".{index}");
                }
                serde_path_to_error::Segment::Map { key } => {
                    at.push('.');
                    at.push_str(key);
                }
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => {}
            }
        }
        field_error(&at, FieldProblem::WrongType, &err.inner().to_string())
    })
}

pub(super) fn invalid(path: &str, reason: &str) -> GatewayError {
    field_error(path, FieldProblem::InvalidValue, reason)
}

/// Anthropic's message spelling: `<path>: <reason>`.
pub(super) fn field_error(path: &str, problem: FieldProblem, reason: &str) -> GatewayError {
    GatewayError::InvalidField {
        param: path.to_owned(),
        problem,
        message: format!("{path}: {reason}"),
    }
}
