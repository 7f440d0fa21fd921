//! Anthropic's stream events → OpenAI chunks. Anthropic streams content blocks by index (text,
//! tool use, thinking) between `message_start` and `message_stop`; OpenAI streams one delta per
//! chunk, tool calls numbered by their own index. The translator keeps what the protocol needs
//! across events: the message id and model, which block is which tool call, the stop reason
//! and the token counts (cumulative in Anthropic's reports).
//!
//! Thinking blocks (`thinking_delta`, `signature_delta`) and other block kinds OpenAI's chunk
//! has no place for are skipped; `ping` and unknown event types are ignored, as Anthropic's
//! versioning policy asks of clients.

use super::response::{TokenCounts, finish_reason};
use super::wire::{
    ContentBlockDelta, ContentBlockStart, ErrorEvent, EventType, MessageDelta, MessageStart,
};
use crate::api::chat::{ChatCompletionChunk, ChunkChoice, Delta};
use crate::providers::sse::SseEvent;
use crate::providers::transport::{Flow, StreamTranslator};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// Bounds the block table, so a broken upstream cannot make us allocate without limit (real
/// messages have a handful of blocks, numbered from 0).
const MAX_CONTENT_BLOCKS: usize = 10_000;

/// What an Anthropic content block becomes in OpenAI's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockRole {
    Text,
    /// A tool call, with its OpenAI `index` (the n-th tool call of the message).
    ToolCall(u32),
    /// The JSON-mode tool: its input streams as content.
    JsonAnswer,
    Skipped,
}

/// One stream's translator; see the module doc. Public for the translation benchmark.
#[derive(Debug)]
pub struct AnthropicChunks {
    json_mode: bool,
    created: i64,
    /// Set by `message_start`; `None` before it.
    message: Option<(String, String)>,
    /// Indexed by Anthropic's block index.
    blocks: Vec<BlockRole>,
    tool_call_count: u32,
    counts: TokenCounts,
    stop_reason: Option<String>,
}

impl AnthropicChunks {
    /// `json_mode`: the request's `response_format` was emulated with a forced tool.
    pub fn new(json_mode: bool) -> Self {
        Self::starting_at(json_mode, crate::auth::now_unix_ms() / 1000)
    }

    /// As `new`, with the `created` time every chunk carries.
    pub fn starting_at(json_mode: bool, created: i64) -> Self {
        Self {
            json_mode,
            created,
            message: None,
            blocks: Vec::new(),
            tool_call_count: 0,
            counts: TokenCounts::default(),
            stop_reason: None,
        }
    }

    fn chunk(&self, delta: Delta, finish_reason: Option<&str>) -> ChatCompletionChunk {
        let (id, model) = self
            .message
            .as_ref()
            .map_or(("", ""), |(id, model)| (id.as_str(), model.as_str()));
        ChatCompletionChunk {
            id: id.to_owned(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: model.to_owned(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_owned),
                logprobs: None,
                extra: Map::new(),
            }],
            usage: None,
            extra: Map::new(),
        }
    }

    fn content(&self, text: Cow<'_, str>) -> ChatCompletionChunk {
        self.chunk(
            Delta {
                content: Some(text.into_owned()),
                ..Delta::default()
            },
            None,
        )
    }

    fn tool_call_delta(&self, call: Value) -> ChatCompletionChunk {
        let mut extra = Map::new();
        extra.insert("tool_calls".to_owned(), Value::Array(vec![call]));
        self.chunk(
            Delta {
                extra,
                ..Delta::default()
            },
            None,
        )
    }

    fn message_start(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<(), String> {
        let start: MessageStart = parse(event)?;
        self.counts.apply(&start.message.usage);
        self.message = Some((start.message.id, start.message.model));
        out.push(self.chunk(
            Delta {
                role: Some("assistant".to_owned()),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
        ));
        Ok(())
    }

    fn block_start(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<(), String> {
        let start: ContentBlockStart<'_> = parse(event)?;
        let block = start.content_block;
        let role = match block.kind.as_ref() {
            "text" => BlockRole::Text,
            "tool_use" if self.json_mode => BlockRole::JsonAnswer,
            "tool_use" => {
                let index = self.tool_call_count;
                self.tool_call_count += 1;
                out.push(self.tool_call_delta(json!({
                    "index": index,
                    "id": block.id.as_deref().unwrap_or_default(),
                    "type": "function",
                    "function": {
                        "name": block.name.as_deref().unwrap_or_default(),
                        "arguments": "",
                    },
                })));
                BlockRole::ToolCall(index)
            }
            _ => BlockRole::Skipped,
        };
        if start.index >= MAX_CONTENT_BLOCKS {
            return Err(format!(
                "content block index {} is out of range",
                start.index
            ));
        }
        if start.index >= self.blocks.len() {
            self.blocks.resize(start.index + 1, BlockRole::Skipped);
        }
        self.blocks[start.index] = role;
        if let (BlockRole::Text, Some(text)) = (role, block.text)
            && !text.is_empty()
        {
            out.push(self.content(text));
        }
        Ok(())
    }

    fn block_delta(
        &self,
        event: &SseEvent,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<(), String> {
        let delta: ContentBlockDelta<'_> = parse(event)?;
        let role =
            self.blocks.get(delta.index).copied().ok_or_else(|| {
                format!("a delta for content block {} before its start", delta.index)
            })?;
        let fragment = match (role, delta.delta.kind.as_ref()) {
            (BlockRole::Text, "text_delta") => delta.delta.text,
            (BlockRole::ToolCall(_) | BlockRole::JsonAnswer, "input_json_delta") => {
                delta.delta.partial_json
            }
            _ => None,
        };
        let Some(fragment) = fragment.filter(|fragment| !fragment.is_empty()) else {
            return Ok(());
        };
        match role {
            BlockRole::ToolCall(index) => out.push(self.tool_call_delta(json!({
                "index": index,
                "function": { "arguments": fragment },
            }))),
            _ => out.push(self.content(fragment)),
        }
        Ok(())
    }

    fn message_stop(&self, out: &mut Vec<ChatCompletionChunk>) {
        let finish = finish_reason(self.stop_reason.as_deref(), self.json_mode);
        out.push(self.chunk(Delta::default(), Some(finish)));
        let mut usage = self.chunk(Delta::default(), None);
        usage.choices.clear();
        usage.usage = Some(self.counts.to_usage());
        out.push(usage);
    }
}

impl StreamTranslator for AnthropicChunks {
    fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<Flow, String> {
        // Anthropic names every event; the data's `type` says the same and is the fallback.
        let kind: Cow<'_, str> = match &event.event {
            Some(name) => Cow::Borrowed(name.as_str()),
            None => parse::<EventType<'_>>(event)?.kind,
        };
        let started = self.message.is_some();
        match kind.as_ref() {
            "ping" | "content_block_stop" => {}
            "error" => {
                let error: ErrorEvent = parse(event)?;
                return Err(format!("{}: {}", error.error.kind, error.error.message));
            }
            "message_start" => self.message_start(event, out)?,
            "content_block_start" | "content_block_delta" | "message_delta" | "message_stop"
                if !started =>
            {
                return Err(format!("'{kind}' before message_start"));
            }
            "content_block_start" => self.block_start(event, out)?,
            "content_block_delta" => self.block_delta(event, out)?,
            "message_delta" => {
                let delta: MessageDelta = parse(event)?;
                if delta.delta.stop_reason.is_some() {
                    self.stop_reason = delta.delta.stop_reason;
                }
                self.counts.apply(&delta.usage);
            }
            "message_stop" => {
                self.message_stop(out);
                return Ok(Flow::Done);
            }
            _ => {}
        }
        Ok(Flow::Continue)
    }

    fn on_close(&mut self, _out: &mut Vec<ChatCompletionChunk>) -> Result<(), String> {
        Err("the upstream closed the stream before message_stop".to_owned())
    }
}

/// The event's data, borrowed where it has no escapes.
fn parse<'a, T: Deserialize<'a>>(event: &'a SseEvent) -> Result<T, String> {
    serde_json::from_str(&event.data).map_err(|err| {
        let kind = event.event.as_deref().unwrap_or("an");
        format!("unparseable {kind} event: {err}")
    })
}
