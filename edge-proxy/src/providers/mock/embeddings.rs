//! The mock's embedding vectors: a pure function of the input, so demos and tests get the same
//! vector for the same text on every run, every machine and every version of the gateway.
//!
//! Each input's SHA-256 seeds a SplitMix64 sequence that fills the vector, which is then
//! L2-normalised like real embedding models' output. The vectors carry no meaning: equal inputs
//! give equal vectors, different inputs give unrelated (near-orthogonal) ones.

use crate::api::embeddings::EmbeddingInput;
use sha2::{Digest, Sha256};

/// Vector length when the request sets no `dimensions`.
pub const DEFAULT_DIMENSIONS: u32 = 256;

/// Largest `dimensions` the mock serves: OpenAI's largest embedding model's size. A request
/// for more is refused (400 naming `dimensions`) rather than silently truncated.
pub const MAX_DIMENSIONS: u32 = 3072;

/// The vectors for every input, in input order, each `dimensions` long and of unit length.
pub fn vectors(input: &EmbeddingInput, dimensions: usize) -> Vec<Vec<f32>> {
    match input {
        EmbeddingInput::Text(text) => vec![vector(&text_seed(text), dimensions)],
        EmbeddingInput::Texts(texts) => texts
            .iter()
            .map(|text| vector(&text_seed(text), dimensions))
            .collect(),
        EmbeddingInput::Tokens(tokens) => vec![vector(&tokens_seed(tokens), dimensions)],
        EmbeddingInput::TokenBatches(batches) => batches
            .iter()
            .map(|tokens| vector(&tokens_seed(tokens), dimensions))
            .collect(),
    }
}

/// Prompt tokens as the mock reports them: whitespace-separated words (at least one per text),
/// token arrays by their length. Deterministic, and close enough to a tokenizer for demos.
pub fn prompt_tokens(input: &EmbeddingInput) -> u64 {
    let words = |text: &str| text.split_whitespace().count().max(1) as u64;
    match input {
        EmbeddingInput::Text(text) => words(text),
        EmbeddingInput::Texts(texts) => texts.iter().map(|text| words(text)).sum(),
        EmbeddingInput::Tokens(tokens) => tokens.len() as u64,
        EmbeddingInput::TokenBatches(batches) => batches.iter().map(|t| t.len() as u64).sum(),
    }
}

// Text and token inputs are hashed under different prefixes, so the token array [104, 105]
// and some text with the same bytes never share a vector.
fn text_seed(text: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"text\0")
        .chain_update(text.as_bytes())
        .finalize()
        .into()
}

fn tokens_seed(tokens: &[u32]) -> [u8; 32] {
    let mut hasher = Sha256::new().chain_update(b"tokens\0");
    for token in tokens {
        hasher.update(token.to_le_bytes());
    }
    hasher.finalize().into()
}

fn vector(seed: &[u8; 32], dimensions: usize) -> Vec<f32> {
    let mut state = u64::from_le_bytes([
        seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
    ]);
    let components: Vec<f64> = (0..dimensions)
        .map(|_| {
            // The top 53 bits as a float in [0, 1), then centred on 0.
            let unit = (split_mix64(&mut state) >> 11) as f64 / (1u64 << 53) as f64;
            unit * 2.0 - 1.0
        })
        .collect();
    let norm = components.iter().map(|c| c * c).sum::<f64>().sqrt();
    if norm == 0.0 {
        // Only when every component drew exactly 0: astronomically unlikely, but a unit vector
        // is still owed.
        let mut unit = vec![0.0; dimensions];
        if let Some(first) = unit.first_mut() {
            *first = 1.0;
        }
        return unit;
    }
    components
        .into_iter()
        .map(|component| (component / norm) as f32)
        .collect()
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fixed, well-mixed generator, so the vectors
/// never change with a dependency's RNG algorithm.
fn split_mix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(text: &str) -> EmbeddingInput {
        EmbeddingInput::Text(text.to_owned())
    }

    fn length(vector: &[f32]) -> f64 {
        vector
            .iter()
            .map(|c| f64::from(*c) * f64::from(*c))
            .sum::<f64>()
            .sqrt()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    #[test]
    fn the_same_text_always_gets_the_same_vector() {
        let a = vectors(&text("the quick brown fox"), 64);
        let b = vectors(&text("the quick brown fox"), 64);
        assert_eq!(a, b);
        // Pinned (checked against an independent Python implementation of the same recipe):
        // the vectors must not change between versions of the gateway.
        let first = vectors(&text("hello"), 4).remove(0);
        let again = vectors(&EmbeddingInput::Texts(vec!["hello".into()]), 4).remove(0);
        assert_eq!(first, again);
        assert_eq!(first, vec![-0.5357919, 0.5609775, -0.50624335, 0.3767612]);
    }

    #[test]
    fn different_texts_get_unrelated_vectors() {
        let inputs = EmbeddingInput::Texts(vec![
            "the quick brown fox".into(),
            "the quick brown fox.".into(),
            "The quick brown fox".into(),
        ]);
        let vectors = vectors(&inputs, 256);
        assert_eq!(vectors.len(), 3);
        for (i, a) in vectors.iter().enumerate() {
            for b in &vectors[i + 1..] {
                assert_ne!(a, b);
                // Independent random directions in 256 dimensions: |cos| is about 1/16.
                assert!(cosine(a, b).abs() < 0.3, "{}", cosine(a, b));
            }
        }
    }

    #[test]
    fn token_arrays_and_text_with_the_same_bytes_differ() {
        let tokens = vectors(&EmbeddingInput::Tokens(vec![104, 105]), 8);
        let batches = vectors(&EmbeddingInput::TokenBatches(vec![vec![104, 105]]), 8);
        assert_eq!(tokens, batches);
        assert_ne!(tokens, vectors(&text("hi"), 8));
        assert_ne!(tokens, vectors(&EmbeddingInput::Tokens(vec![105, 104]), 8));
    }

    #[test]
    fn vectors_have_unit_length_and_the_asked_dimensions() {
        for dimensions in [1, 2, 256, MAX_DIMENSIONS as usize] {
            for vector in vectors(
                &EmbeddingInput::Texts(vec!["a".into(), "b".into()]),
                dimensions,
            ) {
                assert_eq!(vector.len(), dimensions);
                assert!((length(&vector) - 1.0).abs() < 1e-5, "{dimensions}");
            }
        }
    }

    #[test]
    fn prompt_tokens_count_words_and_token_array_lengths() {
        assert_eq!(prompt_tokens(&text("one two  three")), 3);
        assert_eq!(prompt_tokens(&text("   ")), 1);
        assert_eq!(
            prompt_tokens(&EmbeddingInput::Texts(vec!["a b".into(), "c".into()])),
            3
        );
        assert_eq!(prompt_tokens(&EmbeddingInput::Tokens(vec![1, 2, 3, 4])), 4);
        assert_eq!(
            prompt_tokens(&EmbeddingInput::TokenBatches(vec![vec![1], vec![2, 3]])),
            3
        );
    }
}
