//! tiktoken's pre-tokenizer: the text is split into pieces by the encoding's regex, and byte
//! pairs are only ever merged within a piece.
//!
//! tiktoken's patterns end in `\s+(?!\S)|\s+`, a negative look-ahead that Rust's linear-time
//! regex engines do not have. It is written here as two patterns tried after the main one:
//! `\s+\s` whose match gives back its last character (a run of whitespace that stops one short
//! of the next non-space), then `\s+`. Patterns are matched anchored at the end of the previous
//! piece, earlier patterns first, which is the alternation's leftmost-first order.

use regex_automata::meta::{BuildError, Regex};
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::{Anchored, Input};

const CL100K_MAIN: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)",
    r"|[^\r\n\p{L}\p{N}]?\p{L}+",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*",
    r"|\s*[\r\n]+",
    r"|\s+$",
);

const O200K_MAIN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n/]*",
    r"|\s*[\r\n]+",
    r"|\s+$",
);

/// Whitespace up to (not including) the last whitespace character before a non-space.
const SPACE_BEFORE_WORD: &str = r"\s+\s";
const SPACE: &str = r"\s+";
/// Index of [`SPACE_BEFORE_WORD`] among the patterns: its match gives back one character.
const LOOKAHEAD_PATTERN: usize = 1;

/// Which encoding's splitting rules.
#[derive(Debug, Clone, Copy)]
pub enum Rules {
    Cl100k,
    O200k,
}

#[derive(Debug)]
pub struct Pretokenizer {
    patterns: Regex,
}

impl Pretokenizer {
    pub fn new(rules: Rules) -> Result<Self, Box<BuildError>> {
        let main = match rules {
            Rules::Cl100k => CL100K_MAIN,
            Rules::O200k => O200K_MAIN,
        };
        let patterns = Regex::builder()
            .configure(
                Regex::config()
                    .which_captures(WhichCaptures::Implicit)
                    .onepass(false)
                    .backtrack(false)
                    .dfa(false),
            )
            .build_many(&[main, SPACE_BEFORE_WORD, SPACE])
            .map_err(Box::new)?;
        Ok(Self { patterns })
    }

    /// The pieces of `text`, in order; together they are all of `text`.
    pub fn pieces<'t>(&'t self, text: &'t str) -> Pieces<'t> {
        Pieces {
            patterns: &self.patterns,
            text,
            at: 0,
        }
    }
}

pub struct Pieces<'t> {
    patterns: &'t Regex,
    text: &'t str,
    at: usize,
}

impl<'t> Iterator for Pieces<'t> {
    type Item = &'t str;

    fn next(&mut self) -> Option<&'t str> {
        let rest = self.text.get(self.at..).filter(|rest| !rest.is_empty())?;
        let start = self.at;
        let found = self.patterns.find(Input::new(rest).anchored(Anchored::Yes));
        let mut len = match &found {
            Some(found) if found.end() > 0 => found.end(),
            // Every character matches some pattern; should one not, it stands alone rather
            // than ending the count early.
            _ => rest.chars().next().map_or(rest.len(), char::len_utf8),
        };
        if let Some(found) = found
            && found.pattern().as_usize() == LOOKAHEAD_PATTERN
        {
            let given_back = rest[..len].chars().next_back().map_or(0, char::len_utf8);
            // `\s+\s` always leaves at least one character after giving one back.
            len = (len - given_back).max(1);
        }
        self.at = start + len;
        self.text.get(start..self.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(rules: Rules, text: &str) -> Vec<String> {
        let pretokenizer = Pretokenizer::new(rules).unwrap();
        pretokenizer.pieces(text).map(str::to_owned).collect()
    }

    #[test]
    fn whitespace_before_a_word_leaves_one_space_for_the_word() {
        assert_eq!(split(Rules::O200k, "a   b"), ["a", "  ", " b"]);
        assert_eq!(split(Rules::Cl100k, "a   b"), ["a", "  ", " b"]);
        assert_eq!(split(Rules::O200k, "a b"), ["a", " b"]);
        assert_eq!(split(Rules::O200k, "trailing   "), ["trailing", "   "]);
    }

    #[test]
    fn pieces_cover_the_text_exactly() {
        let text = "Hello, World! It's 2024-08-06.\n\n  \tCamelCase naïve 人工智能 👍🏽\r\n";
        for rules in [Rules::O200k, Rules::Cl100k] {
            assert_eq!(split(rules, text).concat(), text);
        }
    }
}
