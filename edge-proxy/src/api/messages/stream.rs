//! Streaming: OpenAI-shaped chunks rendered as Anthropic's event sequence, `message_start`,
//! then per content block `content_block_start`, deltas and `content_block_stop`, then
//! `message_delta` (stop reason and usage) and `message_stop`.
//!
//! - Blocks are sequential: text opens a text block; each new tool call closes the open block
//!   and opens a `tool_use` block whose argument fragments stream as `input_json_delta`. A
//!   fragment for an earlier call (OpenAI never interleaves calls, but a server could) is sent
//!   with that call's block index, which Anthropic's SDKs accumulate correctly.
//! - `message_start` carries the gateway's own prompt count as `input_tokens` (the provider's
//!   count arrives only at the end); `message_delta` carries the billed usage, input included,
//!   which Anthropic's SDKs take over the start's.
//! - A tool call the upstream sent without an id gets `call_<index>`.

use super::response::{ContentBlock, Message, MessageUsage, message_id, stop_reason};
use crate::api::chat::ChatCompletionChunk;
use crate::pricing::TokenUsage;
use serde::Serialize;
use serde_json::{Map, Value};

/// One Anthropic stream event; `name()` is its SSE `event:` line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MessageStreamEvent {
    MessageStart {
        message: Message,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDelta,
        usage: MessageUsage,
    },
    MessageStop,
}

impl MessageStreamEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    TextDelta { text: String },
    InputJsonDelta { partial_json: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MessageDelta {
    pub stop_reason: &'static str,
    pub stop_sequence: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text { index: u32 },
    ToolUse { index: u32 },
}

/// The renderer's state for one stream. Feed it every chunk, then the settled usage.
#[derive(Debug)]
pub struct MessageStream {
    model: String,
    /// The message id if no chunk ever arrives to give the upstream's.
    fallback_id: String,
    prompt_tokens_estimate: u64,
    started: bool,
    open: Option<OpenBlock>,
    next_index: u32,
    /// OpenAI tool call index → Anthropic block index, in order of appearance.
    tool_blocks: Vec<(u64, u32)>,
    finish_reason: Option<String>,
}

impl MessageStream {
    pub fn new(model: String, fallback_id: String, prompt_tokens_estimate: u64) -> Self {
        Self {
            model,
            fallback_id,
            prompt_tokens_estimate,
            started: false,
            open: None,
            next_index: 0,
            tool_blocks: Vec::new(),
            finish_reason: None,
        }
    }

    /// The events one upstream chunk produces (often one, sometimes none).
    pub fn on_chunk(&mut self, chunk: &ChatCompletionChunk, out: &mut Vec<MessageStreamEvent>) {
        if !self.started {
            let id = if chunk.id.is_empty() {
                self.fallback_id.clone()
            } else {
                message_id(&chunk.id)
            };
            self.start(id, out);
        }
        for choice in chunk.choices.iter().filter(|choice| choice.index == 0) {
            if let Some(text) = choice
                .delta
                .content
                .as_deref()
                .filter(|text| !text.is_empty())
            {
                self.text(text, out);
            }
            for call in tool_call_deltas(&choice.delta.extra) {
                self.tool_call(call, out);
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish_reason = Some(reason.clone());
            }
        }
    }

    /// The closing events, once the stream ended and its usage is settled.
    pub fn on_finished(&mut self, usage: &TokenUsage, out: &mut Vec<MessageStreamEvent>) {
        if !self.started {
            self.start(self.fallback_id.clone(), out);
        }
        self.close(out);
        out.push(MessageStreamEvent::MessageDelta {
            delta: MessageDelta {
                stop_reason: stop_reason(self.finish_reason.as_deref()),
                stop_sequence: None,
            },
            usage: MessageUsage::billed(usage),
        });
        out.push(MessageStreamEvent::MessageStop);
    }

    fn start(&mut self, id: String, out: &mut Vec<MessageStreamEvent>) {
        self.started = true;
        out.push(MessageStreamEvent::MessageStart {
            message: Message {
                id,
                kind: "message",
                role: "assistant",
                model: self.model.clone(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: MessageUsage {
                    input_tokens: self.prompt_tokens_estimate,
                    output_tokens: 0,
                    cache_read_input_tokens: None,
                },
            },
        });
    }

    fn text(&mut self, text: &str, out: &mut Vec<MessageStreamEvent>) {
        let index = match self.open {
            Some(OpenBlock::Text { index }) => index,
            _ => {
                self.close(out);
                let index = self.open_block(
                    ContentBlock::Text {
                        text: String::new(),
                    },
                    out,
                );
                self.open = Some(OpenBlock::Text { index });
                index
            }
        };
        out.push(MessageStreamEvent::ContentBlockDelta {
            index,
            delta: BlockDelta::TextDelta {
                text: text.to_owned(),
            },
        });
    }

    fn tool_call(&mut self, call: &Value, out: &mut Vec<MessageStreamEvent>) {
        let call_index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let known = self
            .tool_blocks
            .iter()
            .find(|(seen, _)| *seen == call_index)
            .map(|(_, block)| *block);
        let index = match known {
            Some(index) => index,
            None => {
                self.close(out);
                let text = |pointer: &str| call.pointer(pointer).and_then(Value::as_str);
                let block = ContentBlock::ToolUse {
                    id: text("/id")
                        .filter(|id| !id.is_empty())
                        .map_or_else(|| format!("call_{call_index}"), str::to_owned),
                    name: text("/function/name").unwrap_or_default().to_owned(),
                    input: Value::Object(Map::new()),
                };
                let index = self.open_block(block, out);
                self.open = Some(OpenBlock::ToolUse { index });
                self.tool_blocks.push((call_index, index));
                index
            }
        };
        if let Some(fragment) = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|fragment| !fragment.is_empty())
        {
            out.push(MessageStreamEvent::ContentBlockDelta {
                index,
                delta: BlockDelta::InputJsonDelta {
                    partial_json: fragment.to_owned(),
                },
            });
        }
    }

    fn open_block(
        &mut self,
        content_block: ContentBlock,
        out: &mut Vec<MessageStreamEvent>,
    ) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        out.push(MessageStreamEvent::ContentBlockStart {
            index,
            content_block,
        });
        index
    }

    fn close(&mut self, out: &mut Vec<MessageStreamEvent>) {
        if let Some(OpenBlock::Text { index } | OpenBlock::ToolUse { index }) = self.open.take() {
            out.push(MessageStreamEvent::ContentBlockStop { index });
        }
    }
}

fn tool_call_deltas(extra: &Map<String, Value>) -> impl Iterator<Item = &Value> {
    extra
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn chunk(choices: Value) -> ChatCompletionChunk {
        serde_json::from_value(json!({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "up",
            "choices": choices,
        }))
        .unwrap()
    }

    fn names(events: &[MessageStreamEvent]) -> Vec<&'static str> {
        events.iter().map(MessageStreamEvent::name).collect()
    }

    #[test]
    fn a_stream_without_chunks_still_starts_and_stops() {
        let mut stream = MessageStream::new("m".into(), "msg_fallback".into(), 5);
        let mut out = Vec::new();
        stream.on_finished(&TokenUsage::default(), &mut out);
        assert_eq!(
            names(&out),
            ["message_start", "message_delta", "message_stop"]
        );
        let MessageStreamEvent::MessageStart { message } = &out[0] else {
            panic!()
        };
        assert_eq!(message.id, "msg_fallback");
        assert_eq!(message.usage.input_tokens, 5);
    }

    #[test]
    fn text_after_a_tool_call_opens_a_new_block_and_late_fragments_keep_their_block() {
        let mut stream = MessageStream::new("m".into(), "f".into(), 0);
        let mut out = Vec::new();
        for choices in [
            json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}]}, "finish_reason": null}]),
            json!([{"index": 0, "delta": {"tool_calls": [{"index": 1, "function": {"name": "g", "arguments": "{}"}}]}, "finish_reason": null}]),
            json!([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, "finish_reason": null}]),
            json!([{"index": 0, "delta": {"content": "done"}, "finish_reason": "stop"}]),
        ] {
            stream.on_chunk(&chunk(choices), &mut out);
        }
        let deltas: Vec<(u32, &BlockDelta)> = out
            .iter()
            .filter_map(|event| match event {
                MessageStreamEvent::ContentBlockDelta { index, delta } => Some((*index, delta)),
                _ => None,
            })
            .collect();
        assert_eq!(deltas.len(), 3);
        assert_eq!(deltas[0].0, 1);
        assert_eq!(deltas[1].0, 0);
        assert_eq!(deltas[2].0, 2);
        let MessageStreamEvent::ContentBlockStart { content_block, .. } = &out[3] else {
            panic!("{out:?}")
        };
        assert!(matches!(content_block, ContentBlock::ToolUse { id, .. } if id == "call_1"));
    }
}
