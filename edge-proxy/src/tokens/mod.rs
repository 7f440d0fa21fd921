//! Token counting before the upstream call: prompt (and streamed output) tokens as OpenAI's
//! tiktoken counts them, so limits and budgets can reserve against a number before the provider
//! reports its own usage, which replaces ours when it arrives.
//!
//! Counting is tiktoken's algorithm (pre-tokenizing regex, then byte-pair merges by rank) over
//! tiktoken's vocabularies, stored compactly in the binary (nothing is loaded from disk or the
//! network) and loaded on first use, per encoding: about 7 MiB for o200k_base, where a general
//! BPE library held both encodings in ~100 MiB from start-up. The vocabularies and the counts
//! are checked token for token against `tiktoken-rs`, the reference port of tiktoken, in this
//! module's tests.
//!
//! What is exact and what is an approximation:
//! - OpenAI model families (see [`encoding_for_model`]) are counted with their own encoding;
//!   text counts are exact, and chat framing follows OpenAI's published recipe (see below).
//! - Every other model (Claude, Gemini, Llama, Mistral, mock models, ...) is counted with
//!   `o200k_base` as an approximation: their tokenizers are not public or not shipped here. The
//!   error depends on the model and the language and can be large (other tokenizers often need
//!   more tokens for the same text); the provider-reported usage replaces the count after the
//!   call. [`TokenCounter::is_exact_for`] says which case a model is in.
//! - Chat prompts ([`TokenCounter::count_chat_prompt`]): 3 tokens per message, the role, the
//!   content, the `name` (+1 when present), and 3 tokens priming the assistant's reply, as in
//!   OpenAI's cookbook for current chat models. Content given as parts counts the text of each
//!   text part; images, audio and files count nothing here (their real cost depends on size and
//!   detail and comes from the provider's usage afterwards). Tool calls and legacy function calls
//!   in assistant messages count as their function name plus the arguments' JSON text plus one
//!   token each, the heuristic `tiktoken-rs` uses; a call of another shape counts as its whole
//!   JSON text. Tool definitions (`tools`, `functions`) and other request options are not
//!   counted.
//! - Special-token spellings in user text (`<|endoftext|>`) count as ordinary text, as OpenAI's
//!   API treats them.
//!
//! Cost (`cargo bench -p tollgate-edge-proxy --bench tokens`, one core, release): about 90 µs
//! per 8 KB of prose for either encoding (tiktoken-rs: 170 µs for o200k, 270 µs for cl100k); a
//! 64 KB "word" with no space, the worst case, 23 ms (n log n). It grows with the text, so
//! callers count large prompts off the async runtime (`spawn_blocking`).

mod chat;
mod encoding;
mod merge;
mod pretokenize;
#[cfg(test)]
mod tiktoken_agreement;
mod vocabulary;

pub use chat::{REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE, TOKENS_PER_NAME, TOKENS_PER_TOOL_CALL};
pub use encoding::{APPROXIMATE_ENCODING, Encoding, ModelEncoding, encoding_for_model};

use crate::api::chat::ChatCompletionRequest;

/// Counts tokens the way the upstream model does (or approximates it, see the module docs).
///
/// Cheap to clone or share. An encoding's vocabulary loads on its first count (once per
/// process), so an edge whose models never use cl100k_base never holds it.
/// Counting never fails and never panics on any input.
#[derive(Debug, Clone, Default)]
pub struct TokenCounter;

impl TokenCounter {
    pub fn new() -> Self {
        Self
    }

    /// The encoding used for `model` (an upstream model name, `openai/` or similar provider
    /// prefixes and dated suffixes tolerated) and whether counts with it are exact.
    pub fn encoding_for(&self, model: &str) -> ModelEncoding {
        encoding_for_model(model)
    }

    /// Tokens of `text` as the given (upstream) model counts them.
    pub fn count_text(&self, model: &str, text: &str) -> u64 {
        encoding_for_model(model).encoding.count(text)
    }

    /// Prompt tokens of a chat request, framing included.
    pub fn count_chat_prompt(&self, model: &str, request: &ChatCompletionRequest) -> u64 {
        chat::count_prompt(encoding_for_model(model).encoding, request)
    }

    /// Whether counts for this model are exact (OpenAI family) or an approximation.
    pub fn is_exact_for(&self, model: &str) -> bool {
        encoding_for_model(model).exact
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::chat::ChatCompletionRequest;

    #[test]
    fn hello_world_is_two_tokens_for_every_model_family() {
        let counter = TokenCounter::new();
        for model in ["gpt-4o", "gpt-4", "claude-sonnet-4-5", "mock-echo"] {
            assert_eq!(counter.count_text(model, "hello world"), 2, "{model}");
        }
    }

    #[test]
    fn counter_reports_exactness_by_model_family() {
        let counter = TokenCounter::new();
        assert!(counter.is_exact_for("openai/gpt-4o-2024-08-06"));
        assert!(counter.is_exact_for("gpt-3.5-turbo"));
        assert!(!counter.is_exact_for("claude-3-5-sonnet-latest"));
        assert!(!counter.is_exact_for("mock"));
    }

    #[test]
    fn counter_uses_the_models_encoding() {
        let counter = TokenCounter::new();
        // CJK text is where the 200k vocabulary is much denser than the 100k one.
        let text = "人工智能正在改变我们的生活方式和工作方式。";
        assert_eq!(
            counter.count_text("gpt-4", text),
            Encoding::Cl100kBase.count(text)
        );
        assert_eq!(
            counter.count_text("gpt-4o", text),
            Encoding::O200kBase.count(text)
        );
        assert_ne!(
            counter.count_text("gpt-4", text),
            counter.count_text("gpt-4o", text)
        );
    }

    #[test]
    fn chat_prompt_of_one_short_user_message_is_nine_tokens() {
        let request = ChatCompletionRequest::parse(
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}]}"#,
        )
        .unwrap();
        // 3 framing + 1 ("user") + 2 ("hello world") + 3 reply priming.
        assert_eq!(TokenCounter::new().count_chat_prompt("gpt-4o", &request), 9);
    }
}
