//! Deterministic embedding vectors: the same text always maps to the same vector, different
//! texts (almost surely) to different ones, and every component is a multiple of 1/1024 so it
//! survives f32, JSON and base64 round trips exactly. Tests compute the expected vector with
//! [`fake_embedding`].

/// Vector length when the request does not ask for one.
pub const FAKE_EMBEDDING_DIMENSIONS: usize = 8;

/// The vector the fake returns for `text` with `dimensions` components, each in [-1000/1024,
/// 1000/1024].
pub fn fake_embedding(text: &str, dimensions: usize) -> Vec<f32> {
    // FNV-1a, then xorshift64 per component.
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let step = i32::try_from(state % 2001).unwrap_or(0) - 1000;
            step as f32 / 1024.0
        })
        .collect()
}

/// Prompt tokens the fake reports for an embeddings input: one per whitespace-separated word.
pub(crate) fn text_tokens(text: &str) -> u64 {
    text.split_whitespace().count().max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_and_distinct() {
        assert_eq!(fake_embedding("a", 8), fake_embedding("a", 8));
        assert_ne!(fake_embedding("a", 8), fake_embedding("b", 8));
        assert_eq!(fake_embedding("a", 3).len(), 3);
        assert!(
            fake_embedding("x", 64)
                .iter()
                .all(|value| value.abs() < 1.0 && (value * 1024.0).fract() == 0.0)
        );
    }
}
