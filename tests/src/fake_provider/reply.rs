//! What the fake model answers, before any wire format: a text of N one-token pieces, or a
//! call of one tool with [`FAKE_TOOL_ARGUMENTS`]. Every format renders the same reply, so a
//! test asserts the same content whichever provider kind it goes through.

use std::time::{SystemTime, UNIX_EPOCH};

use super::wire::Ask;
use super::{FAKE_COMPLETION_TOKENS, FAKE_CONTENT, FAKE_PROMPT_TOKENS, FAKE_TOOL_ARGUMENTS};
use super::{FAKE_TOOL_CALL_TOKENS, script::Behavior};

/// Longest tool-argument fragment in a stream: the arguments arrive in several pieces, as
/// real providers send them.
const ARGUMENT_FRAGMENT_CHARS: usize = 8;

#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// Unique per request, for ids.
    pub seq: u64,
    /// The model as the response names it.
    pub model: String,
    pub created: u64,
    pub output: Output,
    pub prompt_tokens: u64,
}

#[derive(Debug, Clone)]
pub(crate) enum Output {
    /// `pieces` one-token pieces; `truncated` when the request's output cap cut it.
    Text {
        pieces: usize,
        truncated: bool,
    },
    ToolCall {
        name: String,
    },
}

impl Reply {
    pub(crate) fn new(seq: u64, ask: &Ask, behavior: &Behavior) -> Reply {
        let output = match &ask.tool {
            Some(name) => Output::ToolCall { name: name.clone() },
            None => {
                let wanted = behavior
                    .text_pieces()
                    .unwrap_or(FAKE_COMPLETION_TOKENS as usize);
                let cap = ask
                    .max_output_tokens
                    .map_or(usize::MAX, |cap| usize::try_from(cap).unwrap_or(usize::MAX));
                Output::Text {
                    pieces: wanted.min(cap).max(1),
                    truncated: cap < wanted,
                }
            }
        };
        Reply {
            seq,
            model: ask.model.clone(),
            created: unix_now(),
            output,
            prompt_tokens: FAKE_PROMPT_TOKENS,
        }
    }

    pub(crate) fn completion_tokens(&self) -> u64 {
        match &self.output {
            Output::Text { pieces, .. } => *pieces as u64,
            Output::ToolCall { .. } => FAKE_TOOL_CALL_TOKENS,
        }
    }

    /// Whether the output cap cut the text.
    pub(crate) fn truncated(&self) -> bool {
        matches!(
            self.output,
            Output::Text {
                truncated: true,
                ..
            }
        )
    }

    /// The whole text (empty for a tool call).
    pub(crate) fn text(&self) -> String {
        match &self.output {
            Output::Text { pieces, .. } => (0..*pieces).map(text_piece).collect(),
            Output::ToolCall { .. } => String::new(),
        }
    }
}

/// The `index`-th piece of a text reply: the words of [`FAKE_CONTENT`], cycling, each after
/// the first with its leading space; the first five make exactly [`FAKE_CONTENT`].
pub(crate) fn text_piece(index: usize) -> String {
    let words: Vec<&str> = FAKE_CONTENT.split(' ').collect();
    let word = words[index % words.len()];
    if index == 0 {
        word.to_owned()
    } else {
        format!(" {word}")
    }
}

/// [`FAKE_TOOL_ARGUMENTS`] in the pieces a stream sends.
pub(crate) fn argument_fragments() -> Vec<String> {
    let chars: Vec<char> = FAKE_TOOL_ARGUMENTS.chars().collect();
    chars
        .chunks(ARGUMENT_FRAGMENT_CHARS)
        .map(|chunk| chunk.iter().collect())
        .collect()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_pieces_make_the_fake_content_and_fragments_the_arguments() {
        let text: String = (0..5).map(text_piece).collect();
        assert_eq!(text, FAKE_CONTENT);
        let fragments = argument_fragments();
        assert!(fragments.len() > 2, "{fragments:?}");
        assert_eq!(fragments.concat(), FAKE_TOOL_ARGUMENTS);
    }
}
