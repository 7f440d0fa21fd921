//! Embeddings (`POST /v1/embeddings`) in OpenAI's exact shape. Adapters always produce float
//! vectors; `encoding_format: "base64"` (the openai SDKs' default) is applied by the HTTP layer.

use super::fields;
use super::json::{self, ParseLimits};
use crate::error::{FieldProblem, GatewayError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// OpenAI's bound on inputs per request.
pub const MAX_INPUTS: usize = 2048;

#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Anything else, passed through to OpenAI-compatible upstreams.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A string, strings, a token array or token arrays, as OpenAI accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenBatches(Vec<Vec<u32>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

impl EmbeddingInput {
    /// How many vectors the request asks for.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(_) | Self::Tokens(_) => 1,
            Self::Texts(texts) => texts.len(),
            Self::TokenBatches(batches) => batches.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The inputs as text, for upstreams that only take text; `None` for token arrays.
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self {
            Self::Text(text) => Some(vec![text.as_str()]),
            Self::Texts(texts) => Some(texts.iter().map(String::as_str).collect()),
            Self::Tokens(_) | Self::TokenBatches(_) => None,
        }
    }
}

impl EmbeddingsRequest {
    /// Parses and validates a request body; every failure names the field.
    pub fn parse(body: &[u8]) -> Result<Self, GatewayError> {
        Self::parse_within(body, &ParseLimits::default())
    }

    /// Like [`Self::parse`], with the body's size bounded by `limits` before it is a tree.
    pub fn parse_within(body: &[u8], limits: &ParseLimits) -> Result<Self, GatewayError> {
        let mut object = json::parse_object(body, limits)?;
        json::check_item_count(&object, "input", limits.max_items)?;
        let model: String = fields::required(&mut object, "model")?;
        if model.is_empty() {
            return Err(invalid_value("model", "must not be empty"));
        }
        let input: EmbeddingInput = fields::required(&mut object, "input")?;
        if input.is_empty() {
            return Err(invalid_value("input", "must not be empty"));
        }
        if input.len() > MAX_INPUTS {
            return Err(invalid_value(
                "input",
                &format!("at most {MAX_INPUTS} inputs per request"),
            ));
        }
        let empty_item = match &input {
            EmbeddingInput::Text(text) => text.is_empty(),
            EmbeddingInput::Texts(texts) => texts.iter().any(String::is_empty),
            EmbeddingInput::Tokens(tokens) => tokens.is_empty(),
            EmbeddingInput::TokenBatches(batches) => batches.iter().any(Vec::is_empty),
        };
        if empty_item {
            return Err(invalid_value("input", "inputs must not be empty"));
        }
        let encoding_format = fields::optional(&mut object, "encoding_format")?;
        let dimensions: Option<u32> = fields::optional(&mut object, "dimensions")?;
        if dimensions == Some(0) {
            return Err(invalid_value("dimensions", "must be at least 1"));
        }
        let user = fields::optional(&mut object, "user")?;
        Ok(Self {
            model,
            input,
            encoding_format,
            dimensions,
            user,
            extra: object,
        })
    }
}

fn invalid_value(param: &str, reason: &str) -> GatewayError {
    GatewayError::InvalidField {
        param: param.to_owned(),
        problem: FieldProblem::InvalidValue,
        message: format!("invalid '{param}': {reason}"),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    /// Always "list" (some compatible servers omit it).
    #[serde(default = "list")]
    pub object: String,
    pub data: Vec<Embedding>,
    pub model: String,
    /// Absent when the upstream does not report usage (Gemini); the edge then counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<EmbeddingsUsage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// Always "embedding" (some compatible servers omit it).
    #[serde(default = "embedding")]
    pub object: String,
    pub index: u32,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingsUsage {
    pub prompt_tokens: u64,
    /// Equal to prompt_tokens; some compatible servers omit it.
    #[serde(default)]
    pub total_tokens: u64,
}

fn list() -> String {
    "list".to_owned()
}

fn embedding() -> String {
    "embedding".to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accepts_every_input_shape() {
        for (body, count) in [
            (r#"{"model":"m","input":"hi"}"#, 1),
            (r#"{"model":"m","input":["a","b"]}"#, 2),
            (r#"{"model":"m","input":[1,2,3]}"#, 1),
            (r#"{"model":"m","input":[[1],[2,3]]}"#, 2),
        ] {
            let request = EmbeddingsRequest::parse(body.as_bytes()).unwrap();
            assert_eq!(request.input.len(), count, "{body}");
        }
        let request = EmbeddingsRequest::parse(
            br#"{"model":"m","input":"x","encoding_format":"base64","dimensions":8,"x":1}"#,
        )
        .unwrap();
        assert_eq!(request.encoding_format, Some(EncodingFormat::Base64));
        assert_eq!(request.dimensions, Some(8));
        assert_eq!(request.extra["x"], 1);
    }

    #[test]
    fn a_terse_compatible_server_response_still_parses() {
        let response: EmbeddingsResponse = serde_json::from_str(
            r#"{"data":[{"index":0,"embedding":[0.5]}],"model":"m","usage":{"prompt_tokens":3}}"#,
        )
        .unwrap();
        assert_eq!(response.object, "list");
        assert_eq!(response.data[0].object, "embedding");
        assert_eq!(response.usage.unwrap().prompt_tokens, 3);
    }

    #[test]
    fn bad_input_names_the_field() {
        for body in [
            r#"{"model":"m"}"#,
            r#"{"model":"m","input":[]}"#,
            r#"{"model":"m","input":""}"#,
            r#"{"model":"m","input":["a",""]}"#,
            r#"{"model":"m","input":{"a":1}}"#,
            r#"{"model":"m","input":"x","encoding_format":"hex"}"#,
            r#"{"model":"m","input":"x","dimensions":0}"#,
        ] {
            match EmbeddingsRequest::parse(body.as_bytes()).unwrap_err() {
                GatewayError::InvalidField { param, .. } => {
                    assert!(
                        ["input", "encoding_format", "dimensions"].contains(&param.as_str()),
                        "{body}: {param}"
                    );
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
