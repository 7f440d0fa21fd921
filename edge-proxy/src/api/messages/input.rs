//! Anthropic's request body as serde types: what a conversation turn, a tool and a tool
//! choice may hold. Unknown fields and block types are refused (`deny_unknown_fields`), so the
//! translation never drops something the client asked for; `cache_control` hints are the one
//! field accepted and ignored.

use serde::Deserialize;
use serde::de::{self, IgnoredAny};
use serde_json::{Map, Value};
use std::fmt;
use std::marker::PhantomData;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InputMessage {
    pub(super) role: InputRole,
    pub(super) content: TextOr<InputBlock>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum InputRole {
    User,
    Assistant,
}

/// Anthropic's "a string or a list of blocks" (message content, `system`, tool results).
/// Hand-written rather than `untagged` so a bad block's error names the block.
pub(super) enum TextOr<B> {
    Text(String),
    Blocks(Vec<B>),
}

impl<'de, B: Deserialize<'de>> Deserialize<'de> for TextOr<B> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<B>(PhantomData<B>);

        impl<'de, B: Deserialize<'de>> de::Visitor<'de> for Visitor<B> {
            type Value = TextOr<B>;

            fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
                formatter.write_str("a string or a list of content blocks")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(TextOr::Text(text.to_owned()))
            }

            fn visit_string<E: de::Error>(self, text: String) -> Result<Self::Value, E> {
                Ok(TextOr::Text(text))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut blocks = Vec::new();
                while let Some(block) = seq.next_element()? {
                    blocks.push(block);
                }
                Ok(TextOr::Blocks(blocks))
            }
        }

        deserializer.deserialize_any(Visitor(PhantomData))
    }
}

/// The blocks a conversation turn may hold. Others (documents, thinking, server tool results)
/// are refused by name: they have no OpenAI equivalent.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum InputBlock {
    Text {
        text: String,
        #[serde(default, rename = "cache_control")]
        _cache_control: Option<IgnoredAny>,
    },
    Image {
        source: ImageSource,
        #[serde(default, rename = "cache_control")]
        _cache_control: Option<IgnoredAny>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Map<String, Value>,
        #[serde(default, rename = "cache_control")]
        _cache_control: Option<IgnoredAny>,
    },
    ToolResult {
        tool_use_id: String,
        #[serde(default)]
        content: Option<TextOr<ResultBlock>>,
        #[serde(default)]
        is_error: Option<bool>,
        #[serde(default, rename = "cache_control")]
        _cache_control: Option<IgnoredAny>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum ImageSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum ResultBlock {
    Text {
        text: String,
        #[serde(default, rename = "cache_control")]
        _cache_control: Option<IgnoredAny>,
    },
    Image {
        #[serde(rename = "source")]
        _source: IgnoredAny,
        #[serde(default, rename = "cache_control")]
        _cache_control: Option<IgnoredAny>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum TextBlock {
    Text {
        text: String,
        #[serde(default, rename = "cache_control")]
        _cache_control: Option<IgnoredAny>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Metadata {
    #[serde(default)]
    pub(super) user_id: Option<String>,
}

/// A custom tool (`type` absent or `"custom"`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Tool {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: Option<String>,
    pub(super) input_schema: Map<String, Value>,
    #[serde(default, rename = "type")]
    _kind: Option<IgnoredAny>,
    #[serde(default, rename = "cache_control")]
    _cache_control: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum ToolChoice {
    Auto {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Any {
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    Tool {
        name: String,
        #[serde(default)]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}
