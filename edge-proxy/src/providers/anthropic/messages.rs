//! OpenAI's message list → Anthropic's `system` and `messages`. Anthropic has no system role
//! (system and developer messages become the top-level `system`, in order), takes tool results
//! as user content (`tool_result` blocks), tool calls as assistant content (`tool_use` blocks),
//! and requires user and assistant turns to alternate, so consecutive turns of one role are
//! merged into one message.

use super::request::unsupported;
use super::wire::{Block, ImageSource, Message, Role, TextBlock, ToolResultContent};
use crate::api::chat::{self, ChatMessage, MessageContent};
use crate::providers::ProviderError;
use serde_json::{Map, Value};

/// The translated conversation.
#[derive(Debug, Default)]
pub struct Conversation<'a> {
    pub system: Vec<TextBlock<'a>>,
    pub messages: Vec<Message<'a>>,
}

impl<'a> Conversation<'a> {
    /// Appends to the last message when it has the same role (Anthropic requires alternation).
    fn push(&mut self, role: Role, content: Vec<Block<'a>>) {
        match self.messages.last_mut() {
            Some(last) if last.role == role => last.content.extend(content),
            _ => self.messages.push(Message { role, content }),
        }
    }
}

pub fn convert(messages: &[ChatMessage]) -> Result<Conversation<'_>, ProviderError> {
    let mut conversation = Conversation::default();
    for (i, message) in messages.iter().enumerate() {
        check_fields(i, message)?;
        match message.role {
            chat::Role::System | chat::Role::Developer => {
                system_text(i, message.content.as_ref(), &mut conversation.system)?;
            }
            chat::Role::User => {
                let mut blocks = Vec::new();
                content_blocks(
                    i,
                    message.content.as_ref(),
                    Parts::TextAndImages,
                    &mut blocks,
                )?;
                conversation.push(Role::User, blocks);
            }
            chat::Role::Assistant => {
                let mut blocks = Vec::new();
                content_blocks(i, message.content.as_ref(), Parts::Text, &mut blocks)?;
                if let Some(calls) = message.extra.get("tool_calls") {
                    tool_uses(i, calls, &mut blocks)?;
                }
                conversation.push(Role::Assistant, blocks);
            }
            chat::Role::Tool => {
                conversation.push(Role::User, vec![tool_result(i, message)?]);
            }
            chat::Role::Function => {
                return Err(unsupported(
                    format!("messages[{i}].role"),
                    "the deprecated 'function' role is not supported; use 'tool' messages",
                ));
            }
        }
    }
    Ok(conversation)
}

/// Fields beyond `role` and `content` that a message of this role may carry. A tool message's
/// `name` is redundant (the `tool_call_id` identifies the call) and is dropped; anywhere else a
/// participant name has no place in Anthropic's messages, so it is refused rather than lost.
fn check_fields(i: usize, message: &ChatMessage) -> Result<(), ProviderError> {
    let allowed: &[&str] = match message.role {
        chat::Role::Assistant => &["tool_calls"],
        chat::Role::Tool => &["tool_call_id", "name"],
        // Refused as a whole, by role.
        chat::Role::Function => return Ok(()),
        _ => &[],
    };
    match non_null_keys(&message.extra).find(|key| !allowed.contains(key)) {
        None => Ok(()),
        Some(key) => Err(unsupported(
            format!("messages[{i}].{key}"),
            "Anthropic messages have no such field",
        )),
    }
}

fn non_null_keys(fields: &Map<String, Value>) -> impl Iterator<Item = &str> {
    fields
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(key, _)| key.as_str())
}

fn system_text<'a>(
    i: usize,
    content: Option<&'a MessageContent>,
    system: &mut Vec<TextBlock<'a>>,
) -> Result<(), ProviderError> {
    let mut blocks = Vec::new();
    content_blocks(i, content, Parts::Text, &mut blocks)?;
    system.extend(blocks.into_iter().filter_map(|block| match block {
        Block::Text { text } => Some(TextBlock::new(text)),
        _ => None,
    }));
    Ok(())
}

/// Which content parts a role may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parts {
    Text,
    TextAndImages,
}

/// String content or text/image parts → blocks. Empty text is left out: Anthropic rejects
/// empty text blocks, and OpenAI clients often send `content: ""` beside tool calls.
fn content_blocks<'a>(
    i: usize,
    content: Option<&'a MessageContent>,
    allowed: Parts,
    out: &mut Vec<Block<'a>>,
) -> Result<(), ProviderError> {
    let parts = match content {
        None => return Ok(()),
        Some(MessageContent::Text(text)) => {
            if !text.is_empty() {
                out.push(Block::Text { text });
            }
            return Ok(());
        }
        Some(MessageContent::Parts(parts)) => parts,
    };
    for (j, part) in parts.iter().enumerate() {
        let param = |field: &str| format!("messages[{i}].content[{j}].{field}");
        match part.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = part
                    .get("text")
                    .and_then(Value::as_str)
                    .ok_or_else(|| unsupported(param("text"), "a text part needs a string"))?;
                if !text.is_empty() {
                    out.push(Block::Text { text });
                }
            }
            Some("image_url") if allowed == Parts::TextAndImages => {
                let url = part
                    .pointer("/image_url/url")
                    .and_then(Value::as_str)
                    .ok_or_else(|| unsupported(param("image_url.url"), "missing image URL"))?;
                // `detail` is a resolution hint Anthropic does not take; it changes cost, not
                // meaning, so it is accepted and dropped.
                let source = image_source(url).ok_or_else(|| {
                    unsupported(
                        param("image_url.url"),
                        "Anthropic takes base64 data: URLs or http(s) URLs for images",
                    )
                })?;
                out.push(Block::Image { source });
            }
            _ => {
                let reason = match allowed {
                    Parts::Text => "only text parts are supported in this message",
                    Parts::TextAndImages => "only text and image_url parts are supported",
                };
                return Err(unsupported(param("type"), reason));
            }
        }
    }
    Ok(())
}

/// `data:<media type>;base64,<data>` → base64 source; `http(s)://` → URL source.
fn image_source(url: &str) -> Option<ImageSource<'_>> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',')?;
        let media_type = meta.strip_suffix(";base64")?.split(';').next()?;
        return (!media_type.is_empty() && !data.is_empty())
            .then_some(ImageSource::Base64 { media_type, data });
    }
    let scheme = url.split_once("://")?.0;
    (scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http"))
        .then_some(ImageSource::Url { url })
}

/// An assistant's `tool_calls` → `tool_use` blocks; the arguments string must be a JSON object
/// (Anthropic's `input`), an empty string standing for no arguments.
fn tool_uses<'a>(
    i: usize,
    calls: &'a Value,
    out: &mut Vec<Block<'a>>,
) -> Result<(), ProviderError> {
    let Some(calls) = calls.as_array() else {
        return Err(unsupported(
            format!("messages[{i}].tool_calls"),
            "must be an array of tool calls",
        ));
    };
    for (j, call) in calls.iter().enumerate() {
        let param = |field: &str| format!("messages[{i}].tool_calls[{j}].{field}");
        if call
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("function")
            != "function"
        {
            return Err(unsupported(
                param("type"),
                "only function tool calls are supported",
            ));
        }
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| unsupported(param("id"), "a tool call needs a string id"))?;
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| unsupported(param("function.name"), "a tool call needs a name"))?;
        let arguments = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        let input = if arguments.trim().is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str::<Value>(arguments)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| {
                    unsupported(
                        param("function.arguments"),
                        "must be a JSON object encoded as a string (Anthropic's tool input)",
                    )
                })?
        };
        out.push(Block::ToolUse { id, name, input });
    }
    Ok(())
}

fn tool_result(i: usize, message: &ChatMessage) -> Result<Block<'_>, ProviderError> {
    let tool_use_id = message
        .extra
        .get("tool_call_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            unsupported(
                format!("messages[{i}].tool_call_id"),
                "a tool message needs the tool_call_id it answers",
            )
        })?;
    let content = match &message.content {
        None => ToolResultContent::Text(""),
        Some(MessageContent::Text(text)) => ToolResultContent::Text(text),
        Some(parts) => {
            let mut blocks = Vec::new();
            content_blocks(i, Some(parts), Parts::Text, &mut blocks)?;
            ToolResultContent::Blocks(
                blocks
                    .into_iter()
                    .filter_map(|block| match block {
                        Block::Text { text } => Some(TextBlock::new(text)),
                        _ => None,
                    })
                    .collect(),
            )
        }
    };
    Ok(Block::ToolResult {
        tool_use_id,
        content,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn data_urls_become_base64_sources_and_web_urls_url_sources() {
        assert!(matches!(
            image_source("data:image/png;base64,iVBORw0KGgo="),
            Some(ImageSource::Base64 {
                media_type: "image/png",
                data: "iVBORw0KGgo="
            })
        ));
        assert!(matches!(
            image_source("HTTPS://example.com/cat.jpg"),
            Some(ImageSource::Url { .. })
        ));
        assert!(image_source("data:image/png,rawbytes").is_none());
        assert!(image_source("data:;base64,abc").is_none());
        assert!(image_source("ftp://example.com/cat.jpg").is_none());
        assert!(image_source("cat.jpg").is_none());
    }
}
