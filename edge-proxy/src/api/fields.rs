//! Field-by-field extraction from a JSON object, so every error names the offending field the
//! way OpenAI's `param` does (`messages[0].role`), even for nested values.

use crate::error::{FieldProblem, GatewayError};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tollgate_contract::usage::client_text;

/// Longest `param` path echoed in an error.
const MAX_PARAM_BYTES: usize = 256;

pub fn required<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &str,
) -> Result<T, GatewayError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Err(GatewayError::InvalidField {
            param: name.to_owned(),
            problem: FieldProblem::Missing,
            message: format!("you must provide a '{name}' parameter"),
        }),
        Some(value) => typed(name, value),
    }
}

pub fn optional<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &str,
) -> Result<Option<T>, GatewayError> {
    match fields.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => typed(name, value).map(Some),
    }
}

fn typed<T: DeserializeOwned>(name: &str, value: Value) -> Result<T, GatewayError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut param = name.to_owned();
        for segment in err.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    param.push_str(&format!("[{index}]"))
                }
                serde_path_to_error::Segment::Map { key } => {
                    param.push('.');
                    param.push_str(key);
                }
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => {}
            }
        }
        // Object keys in the path are the client's: a 3 MiB key must not come back whole.
        let param = client_text(&param, MAX_PARAM_BYTES);
        let message = format!("invalid '{param}': {}", err.inner());
        GatewayError::InvalidField {
            param,
            problem: FieldProblem::WrongType,
            message,
        }
    })
}
