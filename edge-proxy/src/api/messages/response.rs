//! The answer: an OpenAI-shaped completion rendered as an Anthropic `Message`.
//!
//! - `id`: the upstream's id when it already is Anthropic's (`msg_...`), else `msg_` + the
//!   upstream id, so it stays traceable in the upstream's logs.
//! - `model`: the name the client asked for, whatever the route resolved to.
//! - `stop_reason`: stop → end_turn, length → max_tokens, tool_calls → tool_use,
//!   content_filter → refusal. OpenAI does not say whether a stop sequence ended the text, so
//!   `stop_sequence` is always null and a stop is `end_turn`.
//! - tool call arguments are parsed into `input`; arguments that are not a JSON object (a
//!   model's broken JSON) become `{}`, since Anthropic's `input` must be an object, and are
//!   logged.
//! - `usage` is the settlement's (what the request was billed), in Anthropic's split: cached
//!   prompt tokens are `cache_read_input_tokens`, not part of `input_tokens`.

use crate::api::chat::ChatCompletion;
use crate::pricing::TokenUsage;
use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub id: String,
    /// Always `"message"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Always `"assistant"`.
    pub role: &'static str,
    pub model: String,
    pub content: Vec<ContentBlock>,
    /// Null only in a stream's `message_start`.
    pub stop_reason: Option<&'static str>,
    pub stop_sequence: Option<String>,
    pub usage: MessageUsage,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MessageUsage {
    /// Prompt tokens not served from the provider's cache.
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

impl MessageUsage {
    pub fn billed(usage: &TokenUsage) -> Self {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        Self {
            input_tokens: usage.input_tokens - cached,
            output_tokens: usage.output_tokens,
            cache_read_input_tokens: (cached > 0).then_some(cached),
        }
    }
}

/// The completion's first choice as a `Message` (an Anthropic request never asks for more).
pub fn render(completion: &ChatCompletion, model: &str, usage: &TokenUsage) -> Message {
    let choice = completion.choices.first();
    let mut content = Vec::new();
    if let Some(message) = choice.map(|choice| &choice.message) {
        if let Some(text) = message.content.as_deref().filter(|text| !text.is_empty()) {
            content.push(ContentBlock::Text {
                text: text.to_owned(),
            });
        }
        content.extend(tool_uses(&message.extra));
    }
    Message {
        id: message_id(&completion.id),
        kind: "message",
        role: "assistant",
        model: model.to_owned(),
        content,
        stop_reason: Some(stop_reason(
            choice.and_then(|choice| choice.finish_reason.as_deref()),
        )),
        stop_sequence: None,
        usage: MessageUsage::billed(usage),
    }
}

fn tool_uses(extra: &Map<String, Value>) -> impl Iterator<Item = ContentBlock> + '_ {
    extra
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|call| {
            let text = |pointer: &str| {
                call.pointer(pointer)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            ContentBlock::ToolUse {
                id: text("/id"),
                name: text("/function/name"),
                input: tool_input(&text("/function/arguments")),
            }
        })
}

/// Tool arguments as Anthropic's `input` object.
pub(super) fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(input @ Value::Object(_)) => input,
        _ => {
            tracing::warn!(
                arguments_len = arguments.len(),
                "tool call arguments are not a JSON object; rendered as an empty input"
            );
            Value::Object(Map::new())
        }
    }
}

pub(super) fn message_id(upstream_id: &str) -> String {
    if upstream_id.starts_with("msg_") {
        upstream_id.to_owned()
    } else {
        format!("msg_{upstream_id}")
    }
}

pub(super) fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn finish_reasons_map_to_anthropic_stop_reasons() {
        assert_eq!(stop_reason(Some("stop")), "end_turn");
        assert_eq!(stop_reason(Some("length")), "max_tokens");
        assert_eq!(stop_reason(Some("tool_calls")), "tool_use");
        assert_eq!(stop_reason(Some("content_filter")), "refusal");
        assert_eq!(stop_reason(None), "end_turn");
    }

    #[test]
    fn ids_keep_anthropics_prefix_or_gain_it() {
        assert_eq!(message_id("msg_01abc"), "msg_01abc");
        assert_eq!(message_id("chatcmpl-9x"), "msg_chatcmpl-9x");
    }

    #[test]
    fn broken_or_non_object_arguments_become_an_empty_input() {
        assert_eq!(tool_input(r#"{"a":1}"#), json!({"a": 1}));
        assert_eq!(tool_input(""), json!({}));
        assert_eq!(tool_input(r#"{"a":"#), json!({}));
        assert_eq!(tool_input("[1]"), json!({}));
    }

    #[test]
    fn cached_prompt_tokens_are_split_out_of_input_tokens() {
        let usage = TokenUsage {
            input_tokens: 100,
            cached_input_tokens: 60,
            output_tokens: 7,
        };
        assert_eq!(
            serde_json::to_value(MessageUsage::billed(&usage)).unwrap(),
            json!({"input_tokens": 40, "output_tokens": 7, "cache_read_input_tokens": 60})
        );
    }
}
