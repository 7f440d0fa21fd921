//! Which BPE encoding a model uses, and counting text with it.

use super::merge::count_piece;
use super::pretokenize::{Pretokenizer, Rules};
use super::vocabulary::Vocabulary;
use std::sync::OnceLock;

/// The tiktoken encodings the gateway counts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GPT-4o, GPT-4.1, GPT-4.5, GPT-5 and the o-series.
    O200kBase,
    /// GPT-4 (before 4o), GPT-3.5 Turbo and OpenAI's embedding models.
    Cl100kBase,
}

/// The encoding used for models whose tokenizer is not available here (every non-OpenAI
/// model): an approximation, replaced by the provider-reported usage after the call.
pub const APPROXIMATE_ENCODING: Encoding = Encoding::O200kBase;

static O200K_BASE: OnceLock<Option<Tokenizer>> = OnceLock::new();
static CL100K_BASE: OnceLock<Option<Tokenizer>> = OnceLock::new();

impl Encoding {
    pub const ALL: [Self; 2] = [Self::O200kBase, Self::Cl100kBase];

    /// tiktoken's name for the encoding.
    pub fn name(self) -> &'static str {
        match self {
            Self::O200kBase => "o200k_base",
            Self::Cl100kBase => "cl100k_base",
        }
    }

    /// Tokens of `text`, identical to tiktoken's `len(encoding.encode_ordinary(text))`.
    /// Linear in the length of `text` (n log n for a single run of letters); never panics.
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        let tokens = match self.tokenizer() {
            Some(tokenizer) => tokenizer.count(text),
            // A token is at least one byte: an over-count, never an under-count, for limits.
            None => text.len(),
        };
        u64::try_from(tokens).unwrap_or(u64::MAX)
    }

    /// The process-wide tokenizer, built on first use: a process only pays (about 7 MiB of
    /// resident memory for o200k_base: index, token bytes, regex) for the encodings its models
    /// need. `None` only on a broken build
    /// (vocabulary data the tests check did not load), logged once.
    pub(super) fn tokenizer(self) -> Option<&'static Tokenizer> {
        let (cell, data, rules) = match self {
            Self::O200kBase => (
                &O200K_BASE,
                include_bytes!("vocab/o200k_base.bin").as_slice(),
                Rules::O200k,
            ),
            Self::Cl100kBase => (
                &CL100K_BASE,
                include_bytes!("vocab/cl100k_base.bin").as_slice(),
                Rules::Cl100k,
            ),
        };
        cell.get_or_init(|| match Tokenizer::load(data, rules) {
            Ok(tokenizer) => Some(tokenizer),
            Err(error) => {
                tracing::error!(encoding = self.name(), %error, "token counting falls back to one token per byte");
                None
            }
        })
        .as_ref()
    }
}

/// An encoding's vocabulary and pre-tokenizer.
#[derive(Debug)]
pub struct Tokenizer {
    vocabulary: Vocabulary,
    pretokenizer: Pretokenizer,
}

impl Tokenizer {
    fn load(data: &'static [u8], rules: Rules) -> anyhow::Result<Self> {
        Ok(Self {
            vocabulary: Vocabulary::load(data)?,
            pretokenizer: Pretokenizer::new(rules)?,
        })
    }

    pub fn count(&self, text: &str) -> usize {
        self.pretokenizer
            .pieces(text)
            .map(|piece| count_piece(&self.vocabulary, piece.as_bytes()))
            .sum()
    }

    #[cfg(test)]
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }
}

/// The encoding chosen for a model and whether counts with it are exact for that model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelEncoding {
    pub encoding: Encoding,
    /// True for OpenAI model families, whose tokenizer this is; false when the encoding stands
    /// in for an unknown tokenizer ([`APPROXIMATE_ENCODING`]).
    pub exact: bool,
}

/// A family of model names sharing one encoding: the family name alone, or followed by one of
/// `separators` and anything (a variant or a dated snapshot: `gpt-4o-mini`, `gpt-4o-2024-08-06`).
struct Family {
    name: &'static str,
    separators: &'static [char],
    encoding: Encoding,
}

/// A variant or snapshot suffix (`-mini`, `-2024-08-06`), an Ollama/Vertex style tag
/// (`:latest`, `@2024-05-13`). Not `.`: `gpt-4.1` is not a `gpt-4`.
const SUFFIX: &[char] = &['-', ':', '@'];
/// GPT-5 point releases (`gpt-5.1`, `gpt-5.2-codex`) keep the family's encoding.
const SUFFIX_OR_POINT_RELEASE: &[char] = &['-', ':', '@', '.'];

const fn family(name: &'static str, encoding: Encoding) -> Family {
    Family {
        name,
        separators: SUFFIX,
        encoding,
    }
}

/// OpenAI's model families and their encodings, as in tiktoken's `model.py`.
const OPENAI_FAMILIES: &[Family] = &[
    family("gpt-4o", Encoding::O200kBase),
    family("chatgpt-4o", Encoding::O200kBase),
    family("gpt-4.1", Encoding::O200kBase),
    family("gpt-4.5", Encoding::O200kBase),
    Family {
        name: "gpt-5",
        separators: SUFFIX_OR_POINT_RELEASE,
        encoding: Encoding::O200kBase,
    },
    family("o1", Encoding::O200kBase),
    family("o3", Encoding::O200kBase),
    family("o4", Encoding::O200kBase),
    family("gpt-4", Encoding::Cl100kBase),
    family("gpt-3.5-turbo", Encoding::Cl100kBase),
    // Azure's spelling of the same model.
    family("gpt-35-turbo", Encoding::Cl100kBase),
    family("text-embedding-3", Encoding::Cl100kBase),
    family("text-embedding-ada-002", Encoding::Cl100kBase),
];

/// The encoding for an upstream model name. Tolerates provider prefixes (`openai/gpt-4o`,
/// `openrouter/openai/gpt-4o`), fine-tune names (`ft:gpt-4o-mini-2024-07-18:org::id`), dated
/// snapshots (`gpt-4o-2024-08-06`) and letter case. Names outside OpenAI's families get
/// [`APPROXIMATE_ENCODING`] with `exact: false`.
pub fn encoding_for_model(model: &str) -> ModelEncoding {
    let name = base_model_name(model);
    OPENAI_FAMILIES
        .iter()
        .find(|family| family.matches(name))
        .map_or(
            ModelEncoding {
                encoding: APPROXIMATE_ENCODING,
                exact: false,
            },
            |family| ModelEncoding {
                encoding: family.encoding,
                exact: true,
            },
        )
}

/// The model name without routing prefixes: the last `/` segment, without a leading `ft:`.
fn base_model_name(model: &str) -> &str {
    let last_segment = model.rsplit('/').next().unwrap_or(model).trim();
    strip_prefix_ignore_ascii_case(last_segment, "ft:").unwrap_or(last_segment)
}

impl Family {
    fn matches(&self, model: &str) -> bool {
        match strip_prefix_ignore_ascii_case(model, self.name) {
            Some(rest) => rest.is_empty() || rest.starts_with(self.separators),
            None => false,
        }
    }
}

fn strip_prefix_ignore_ascii_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoding_of(model: &str) -> (Encoding, bool) {
        let chosen = encoding_for_model(model);
        (chosen.encoding, chosen.exact)
    }

    #[test]
    fn o200k_models_map_to_o200k_exactly() {
        for model in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4o-2024-08-06",
            "gpt-4o-mini-2024-07-18",
            "gpt-4o-audio-preview",
            "chatgpt-4o-latest",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano-2025-04-14",
            "gpt-4.5-preview",
            "gpt-5",
            "gpt-5-mini",
            "gpt-5-nano-2025-08-07",
            "gpt-5.1",
            "gpt-5.2-codex",
            "o1",
            "o1-mini",
            "o1-preview-2024-09-12",
            "o3",
            "o3-mini",
            "o3-pro",
            "o4-mini",
            "o4-mini-deep-research",
        ] {
            assert_eq!(encoding_of(model), (Encoding::O200kBase, true), "{model}");
        }
    }

    #[test]
    fn cl100k_models_map_to_cl100k_exactly() {
        for model in [
            "gpt-4",
            "gpt-4-0613",
            "gpt-4-32k",
            "gpt-4-turbo",
            "gpt-4-turbo-2024-04-09",
            "gpt-4-1106-preview",
            "gpt-3.5-turbo",
            "gpt-3.5-turbo-0125",
            "gpt-3.5-turbo-16k",
            "gpt-3.5-turbo-instruct",
            "gpt-35-turbo",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "text-embedding-ada-002",
        ] {
            assert_eq!(encoding_of(model), (Encoding::Cl100kBase, true), "{model}");
        }
    }

    #[test]
    fn provider_prefixes_fine_tunes_and_case_are_tolerated() {
        assert_eq!(encoding_of("openai/gpt-4o"), (Encoding::O200kBase, true));
        assert_eq!(
            encoding_of("openrouter/openai/gpt-4-turbo"),
            (Encoding::Cl100kBase, true)
        );
        assert_eq!(
            encoding_of("ft:gpt-4o-mini-2024-07-18:acme::abc123"),
            (Encoding::O200kBase, true)
        );
        assert_eq!(
            encoding_of("ft:gpt-3.5-turbo-0125:acme::xyz"),
            (Encoding::Cl100kBase, true)
        );
        assert_eq!(encoding_of("GPT-4o"), (Encoding::O200kBase, true));
        assert_eq!(encoding_of(" gpt-4 "), (Encoding::Cl100kBase, true));
    }

    #[test]
    fn other_models_are_approximated_with_o200k() {
        for model in [
            "claude-sonnet-4-5",
            "anthropic/claude-3-5-haiku-20241022",
            "gemini-2.5-pro",
            "meta-llama/Llama-3.1-8B-Instruct",
            "mistral-large-latest",
            "mock-echo",
            "gpt-oss-120b",
            "o2",
            "gpt-40",
            "gpt-4ooo",
            "gpt-5x",
            "",
            "/",
            "ft:",
            "é",
        ] {
            assert_eq!(encoding_of(model), (APPROXIMATE_ENCODING, false), "{model}");
        }
    }

    #[test]
    fn gpt_4_point_releases_are_not_gpt_4() {
        assert_eq!(encoding_of("gpt-4.1"), (Encoding::O200kBase, true));
        assert_eq!(encoding_of("gpt-4.7"), (APPROXIMATE_ENCODING, false));
    }

    #[test]
    fn empty_text_is_zero_tokens_and_hello_world_two() {
        for encoding in Encoding::ALL {
            assert_eq!(encoding.count(""), 0, "{}", encoding.name());
            assert_eq!(encoding.count("hello world"), 2, "{}", encoding.name());
        }
    }

    #[test]
    fn non_ascii_prefix_lengths_do_not_split_characters() {
        // A multi-byte character where a family name's length would cut it must not panic.
        assert_eq!(strip_prefix_ignore_ascii_case("日本語", "gpt"), None);
        assert_eq!(strip_prefix_ignore_ascii_case("ab", "abc"), None);
        assert_eq!(strip_prefix_ignore_ascii_case("AbC-d", "abc"), Some("-d"));
    }
}
