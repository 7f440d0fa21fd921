//! An Anthropic message → OpenAI's chat completion, and the vocabulary both directions of the
//! translation share: stop reasons as OpenAI finish reasons, token counts as OpenAI usage.

use super::wire::{ContentBlock, MessageResponse, ResponseUsage};
use crate::api::chat::{ChatCompletion, Choice, ResponseMessage, Usage};
use serde_json::{Map, Value, json};

/// OpenAI's finish reason for Anthropic's stop reason. In JSON mode the forced tool call is the
/// answer, so `tool_use` means a normal stop. Unknown (future) reasons read as "stop".
pub fn finish_reason(stop_reason: Option<&str>, json_mode: bool) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") if !json_mode => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Token counts as Anthropic reports them. Its `input_tokens` excludes cached prompt tokens,
/// which it counts apart (read from and written to the cache); OpenAI's `prompt_tokens`
/// includes them, with the cache reads repeated as `cached_tokens` (what the meter bills at the
/// cached rate).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TokenCounts {
    pub input: u64,
    pub output: u64,
    pub cache_creation: u64,
    pub cache_read: u64,
}

impl TokenCounts {
    /// Applies a report; counts it does not mention stay as they were (Anthropic's stream
    /// reports cumulative counts, some only at the start).
    pub fn apply(&mut self, usage: &ResponseUsage) {
        if let Some(input) = usage.input_tokens {
            self.input = input;
        }
        if let Some(output) = usage.output_tokens {
            self.output = output;
        }
        if let Some(created) = usage.cache_creation_input_tokens {
            self.cache_creation = created;
        }
        if let Some(read) = usage.cache_read_input_tokens {
            self.cache_read = read;
        }
    }

    pub fn to_usage(self) -> Usage {
        let prompt = self.input + self.cache_creation + self.cache_read;
        let mut usage = Usage::new(prompt, self.output);
        if self.cache_read > 0 {
            usage.extra.insert(
                "prompt_tokens_details".to_owned(),
                json!({ "cached_tokens": self.cache_read }),
            );
        }
        usage
    }
}

/// The whole answer: text blocks joined as the content, `tool_use` blocks as tool calls (or, in
/// JSON mode, the forced tool's input as the content). Thinking and other block kinds have no
/// place in OpenAI's message and are left out.
pub fn completion(message: MessageResponse, json_mode: bool, created: i64) -> ChatCompletion {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in message.content {
        match block {
            ContentBlock::Text { text: piece } => text.push_str(&piece),
            ContentBlock::ToolUse { input, .. } if json_mode => text.push_str(&input.to_string()),
            ContentBlock::ToolUse { id, name, input } => tool_calls.push(json!({
                "id": id,
                "type": "function",
                "function": { "name": name, "arguments": input.to_string() },
            })),
            ContentBlock::Other => {}
        }
    }
    let mut extra = Map::new();
    let content = if text.is_empty() && !tool_calls.is_empty() {
        None
    } else {
        Some(text)
    };
    if !tool_calls.is_empty() {
        extra.insert("tool_calls".to_owned(), Value::Array(tool_calls));
    }
    let mut counts = TokenCounts::default();
    counts.apply(&message.usage);
    ChatCompletion {
        id: message.id,
        object: "chat.completion".to_owned(),
        created,
        model: message.model,
        choices: vec![Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant".to_owned(),
                content,
                extra,
            },
            finish_reason: Some(
                finish_reason(message.stop_reason.as_deref(), json_mode).to_owned(),
            ),
            logprobs: None,
            extra: Map::new(),
        }],
        usage: Some(counts.to_usage()),
        extra: Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_map_to_openai_finish_reasons() {
        for (stop, json_mode, finish) in [
            (Some("end_turn"), false, "stop"),
            (Some("stop_sequence"), false, "stop"),
            (Some("pause_turn"), false, "stop"),
            (Some("max_tokens"), false, "length"),
            (Some("max_tokens"), true, "length"),
            (Some("tool_use"), false, "tool_calls"),
            (Some("tool_use"), true, "stop"),
            (Some("refusal"), false, "content_filter"),
            (None, false, "stop"),
        ] {
            assert_eq!(finish_reason(stop, json_mode), finish, "{stop:?}");
        }
    }

    #[test]
    fn cached_prompt_tokens_count_as_prompt_tokens() {
        let mut counts = TokenCounts::default();
        counts.apply(&ResponseUsage {
            input_tokens: Some(10),
            output_tokens: Some(1),
            cache_creation_input_tokens: Some(100),
            cache_read_input_tokens: Some(1000),
        });
        counts.apply(&ResponseUsage {
            output_tokens: Some(7),
            ..ResponseUsage::default()
        });
        let usage = counts.to_usage();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.total_tokens
            ),
            (1110, 7, 1117)
        );
        assert_eq!(usage.extra["prompt_tokens_details"]["cached_tokens"], 1000);
    }
}
