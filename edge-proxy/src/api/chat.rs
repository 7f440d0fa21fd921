//! Chat completions: request, response and streaming chunk, in OpenAI's exact shape.

use super::fields;
use super::json::{self, ParseLimits};
use crate::error::{FieldProblem, GatewayError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A parsed `POST /v1/chat/completions` body. Fields the gateway acts on are typed; everything
/// else (temperature, tools, response_format, ...) stays in `extra` and is passed through to
/// OpenAI-compatible upstreams untouched.
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Choices to generate (1..=128, OpenAI's bound); each may produce the output cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// OpenAI's bound on `n`.
const MAX_CHOICES: u32 = 128;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

/// Message content is either a plain string or a list of typed parts (text, image_url, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<Value>),
}

impl MessageContent {
    /// The text of the content, parts' text joined; non-text parts contribute nothing.
    pub fn text(&self) -> String {
        match self {
            Self::Text(text) => text.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

impl ChatCompletionRequest {
    /// Parses and validates a request body; every failure names the field, like OpenAI's `param`.
    pub fn parse(body: &[u8]) -> Result<Self, GatewayError> {
        Self::parse_within(body, &ParseLimits::default())
    }

    /// Like [`Self::parse`], with the body's size bounded by `limits` before it is a tree.
    pub fn parse_within(body: &[u8], limits: &ParseLimits) -> Result<Self, GatewayError> {
        let mut object = json::parse_object(body, limits)?;
        json::check_item_count(&object, "messages", limits.max_items)?;
        let model: String = fields::required(&mut object, "model")?;
        if model.is_empty() {
            return Err(invalid_value("model", "must not be empty"));
        }
        let messages: Vec<ChatMessage> = fields::required(&mut object, "messages")?;
        if messages.is_empty() {
            return Err(invalid_value(
                "messages",
                "must contain at least one message",
            ));
        }
        let stream = fields::optional(&mut object, "stream")?.unwrap_or(false);
        let stream_options = fields::optional(&mut object, "stream_options")?;
        let max_tokens = at_least_one(fields::optional(&mut object, "max_tokens")?, "max_tokens")?;
        let max_completion_tokens = at_least_one(
            fields::optional(&mut object, "max_completion_tokens")?,
            "max_completion_tokens",
        )?;
        let n: Option<u32> = fields::optional(&mut object, "n")?;
        if n.is_some_and(|n| n == 0 || n > MAX_CHOICES) {
            return Err(invalid_value(
                "n",
                &format!("must be between 1 and {MAX_CHOICES}"),
            ));
        }
        Ok(Self {
            model,
            messages,
            stream,
            stream_options,
            max_tokens,
            max_completion_tokens,
            n,
            extra: object,
        })
    }

    pub fn wants_stream_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|options| options.include_usage)
    }

    /// The client's output cap: `max_completion_tokens` supersedes the older `max_tokens`.
    pub fn output_token_cap(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Choices the upstream generates (at least 1).
    pub fn choices(&self) -> u32 {
        self.n.unwrap_or(1).max(1)
    }
}

/// An output cap of 0 asks for nothing a provider can produce (OpenAI refuses it).
fn at_least_one(cap: Option<u32>, param: &str) -> Result<Option<u32>, GatewayError> {
    if cap == Some(0) {
        return Err(invalid_value(param, "must be at least 1"));
    }
    Ok(cap)
}

fn invalid_value(param: &str, reason: &str) -> GatewayError {
    GatewayError::InvalidField {
        param: param.to_owned(),
        problem: FieldProblem::InvalidValue,
        message: format!("invalid '{param}': {reason}"),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Usage {
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            extra: Map::new(),
        }
    }
}

/// A non-streaming response (`object: "chat.completion"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: i64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: ResponseMessage,
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseMessage {
    pub role: String,
    pub content: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One streamed event (`object: "chat.completion.chunk"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: i64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletionChunk {
    /// The final usage-only chunk OpenAI sends when `stream_options.include_usage` is set.
    pub fn is_usage_only(&self) -> bool {
        self.choices.is_empty() && self.usage.is_some()
    }

    /// Whether the chunk carries output: text, a tool call, a finish reason or the usage. A
    /// role-only opening chunk (which some upstreams send before the model produced anything)
    /// does not, so the first-token deadline is not satisfied by it.
    pub fn carries_output(&self) -> bool {
        self.usage.is_some()
            || self.choices.iter().any(|choice| {
                choice.finish_reason.is_some()
                    || choice
                        .delta
                        .content
                        .as_deref()
                        .is_some_and(|text| !text.is_empty())
                    || choice.delta.extra.contains_key("tool_calls")
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse_err(body: &str) -> (String, FieldProblem) {
        match ChatCompletionRequest::parse(body.as_bytes()).unwrap_err() {
            GatewayError::InvalidField { param, problem, .. } => (param, problem),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_known_fields_and_keeps_the_rest() {
        let request = ChatCompletionRequest::parse(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,
                "stream_options":{"include_usage":true},"temperature":0.2,"max_tokens":5}"#,
        )
        .unwrap();
        assert_eq!(request.model, "m");
        assert!(request.stream && request.wants_stream_usage());
        assert_eq!(request.output_token_cap(), Some(5));
        assert_eq!(request.choices(), 1);
        assert_eq!(request.extra["temperature"], 0.2);
        let round_trip = serde_json::to_value(&request).unwrap();
        assert_eq!(round_trip["temperature"], 0.2);
        assert_eq!(round_trip["messages"][0]["content"], "hi");
    }

    #[test]
    fn max_completion_tokens_supersedes_max_tokens_and_n_is_kept() {
        let request = ChatCompletionRequest::parse(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}],
                "max_tokens":5,"max_completion_tokens":9,"n":3}"#,
        )
        .unwrap();
        assert_eq!(request.output_token_cap(), Some(9));
        assert_eq!(request.choices(), 3);
        assert_eq!(serde_json::to_value(&request).unwrap()["n"], 3);
    }

    #[test]
    fn names_the_missing_or_mistyped_field() {
        assert_eq!(
            parse_err(r#"{"messages":[{"role":"user","content":"x"}]}"#),
            ("model".into(), FieldProblem::Missing)
        );
        assert_eq!(
            parse_err(r#"{"model":"m"}"#),
            ("messages".into(), FieldProblem::Missing)
        );
        assert_eq!(
            parse_err(r#"{"model":"m","messages":"x"}"#),
            ("messages".into(), FieldProblem::WrongType)
        );
        assert_eq!(
            parse_err(r#"{"model":7,"messages":[]}"#),
            ("model".into(), FieldProblem::WrongType)
        );
        assert_eq!(
            parse_err(r#"{"model":"m","messages":[]}"#),
            ("messages".into(), FieldProblem::InvalidValue)
        );
        assert_eq!(
            parse_err(r#"{"model":"m","messages":[{"role":"user"},{"role":"robot"}]}"#).0,
            "messages[1].role"
        );
        assert_eq!(
            parse_err(r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":"9"}"#),
            ("max_tokens".into(), FieldProblem::WrongType)
        );
        assert_eq!(
            parse_err(r#"{"model":"m","messages":[{"role":"user"}],"n":0}"#),
            ("n".into(), FieldProblem::InvalidValue)
        );
        assert_eq!(
            parse_err(r#"{"model":"m","messages":[{"role":"user"}],"n":129}"#),
            ("n".into(), FieldProblem::InvalidValue)
        );
        assert_eq!(
            parse_err(r#"{"model":"m","messages":[{"role":"user"}],"max_completion_tokens":-1}"#),
            ("max_completion_tokens".into(), FieldProblem::WrongType)
        );
        for cap in ["max_tokens", "max_completion_tokens"] {
            let body = format!(r#"{{"model":"m","messages":[{{"role":"user"}}],"{cap}":0}}"#);
            assert_eq!(parse_err(&body), (cap.into(), FieldProblem::InvalidValue));
        }
        assert_eq!(
            parse_err(r#"{"model":"m","messages":[{"role":"user"}],"max_completion_tokens":-1}"#),
            ("max_completion_tokens".into(), FieldProblem::WrongType)
        );
    }

    #[test]
    fn malformed_json_and_non_objects_are_rejected() {
        assert!(matches!(
            ChatCompletionRequest::parse(b"{nope"),
            Err(GatewayError::MalformedJson(_))
        ));
        assert!(matches!(
            ChatCompletionRequest::parse(b"[1]"),
            Err(GatewayError::MalformedJson(_))
        ));
    }
}
