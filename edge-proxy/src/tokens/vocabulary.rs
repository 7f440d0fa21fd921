//! A BPE vocabulary: every token's bytes, by rank, and a lookup from bytes to rank.
//!
//! The vocabularies are tiktoken's, stored compactly in the binary (`vocab/*.bin`: a magic, the
//! token count, then each token in rank order as one length byte and its bytes; about 1.7 MiB
//! for o200k_base) and checked token for token against `tiktoken-rs` in the tests. Loading one
//! builds an open-addressing index of `u32` ranks (4 bytes per slot, at most half full) and
//! reads the token bytes in place: o200k_base costs about 2.8 MiB of heap, where a general hash
//! map of its 200k tokens, or a full BPE automaton, costs tens of MiB.

/// The file format's first bytes.
pub(super) const MAGIC: &[u8; 4] = b"TGV1";

/// Why vocabulary data could not be loaded: only ever a broken build, never user input.
#[derive(Debug, thiserror::Error)]
pub enum VocabularyError {
    #[error("vocabulary data is malformed at byte {0}")]
    Malformed(usize),
}

#[derive(Debug)]
pub struct Vocabulary {
    data: &'static [u8],
    /// Offset of each token's bytes in `data`, by rank; its length is the byte before.
    starts: Box<[u32]>,
    /// Open addressing: rank + 1 per slot, 0 for an empty slot.
    slots: Box<[u32]>,
    mask: usize,
    longest: usize,
}

impl Vocabulary {
    pub fn load(data: &'static [u8]) -> Result<Self, VocabularyError> {
        let count = data
            .strip_prefix(MAGIC.as_slice())
            .and_then(|rest| rest.get(..4))
            .and_then(|bytes| bytes.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or(VocabularyError::Malformed(0))? as usize;
        let mut starts = Vec::with_capacity(count);
        let mut at = MAGIC.len() + 4;
        let mut longest = 0;
        for _ in 0..count {
            let len = *data.get(at).ok_or(VocabularyError::Malformed(at))? as usize;
            let start = at + 1;
            if len == 0 || start + len > data.len() {
                return Err(VocabularyError::Malformed(at));
            }
            starts.push(u32::try_from(start).map_err(|_| VocabularyError::Malformed(at))?);
            longest = longest.max(len);
            at = start + len;
        }
        if at != data.len() {
            return Err(VocabularyError::Malformed(at));
        }
        let capacity = (count * 2).next_power_of_two().max(16);
        let mut vocabulary = Vocabulary {
            data,
            starts: starts.into_boxed_slice(),
            slots: vec![0; capacity].into_boxed_slice(),
            mask: capacity - 1,
            longest,
        };
        for rank in 0..count {
            let token = vocabulary.token(rank);
            let mut slot = hash(token) & vocabulary.mask;
            while vocabulary.slots[slot] != 0 {
                slot = (slot + 1) & vocabulary.mask;
            }
            vocabulary.slots[slot] =
                u32::try_from(rank + 1).map_err(|_| VocabularyError::Malformed(0))?;
        }
        Ok(vocabulary)
    }

    /// The rank of the token whose bytes are `bytes`, if there is one.
    #[inline]
    pub fn rank(&self, bytes: &[u8]) -> Option<u32> {
        if bytes.is_empty() || bytes.len() > self.longest {
            return None;
        }
        let mut slot = hash(bytes) & self.mask;
        loop {
            let entry = self.slots[slot];
            if entry == 0 {
                return None;
            }
            let rank = entry - 1;
            if self.token(rank as usize) == bytes {
                return Some(rank);
            }
            slot = (slot + 1) & self.mask;
        }
    }

    /// Tokens in the vocabulary.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// The bytes of the token of `rank` (`rank < len()`).
    pub fn token(&self, rank: usize) -> &'static [u8] {
        let start = self.starts[rank] as usize;
        let len = self.data[start - 1] as usize;
        &self.data[start..start + len]
    }
}

/// FxHash-style multiply-rotate over 8-byte words: tokens are short, and the table only needs
/// a good spread, not resistance to chosen input (its keys are the fixed vocabulary; a lookup
/// of user text costs at most one probe sequence whatever the text).
#[inline]
fn hash(bytes: &[u8]) -> usize {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
    let mut state = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        state = (state.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        state = (state.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(SEED);
    }
    // The high bits mix best; fold them down for the mask.
    (state ^ (state >> 29)) as usize
}

/// Encodes `tokens` (in rank order) in the vocabulary file format.
#[cfg(test)]
pub(super) fn encode(tokens: &[Vec<u8>]) -> Vec<u8> {
    let mut data = MAGIC.to_vec();
    data.extend_from_slice(&u32::try_from(tokens.len()).unwrap().to_le_bytes());
    for token in tokens {
        data.push(u8::try_from(token.len()).unwrap());
        data.extend_from_slice(token);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leak(data: Vec<u8>) -> &'static [u8] {
        Box::leak(data.into_boxed_slice())
    }

    #[test]
    fn looks_up_every_token_and_nothing_else() {
        let tokens: Vec<Vec<u8>> = ["a", "b", "ab", "abc", "hello world!", "\u{e9}"]
            .iter()
            .map(|token| token.as_bytes().to_vec())
            .collect();
        let vocabulary = Vocabulary::load(leak(encode(&tokens))).unwrap();
        assert_eq!(vocabulary.len(), tokens.len());
        for (rank, token) in tokens.iter().enumerate() {
            assert_eq!(vocabulary.rank(token), Some(rank as u32));
            assert_eq!(vocabulary.token(rank), token.as_slice());
        }
        for absent in ["", "c", "abcd", "ba", "hello world", "hello world!!"] {
            assert_eq!(vocabulary.rank(absent.as_bytes()), None, "{absent:?}");
        }
    }

    #[test]
    fn malformed_data_is_an_error_not_a_panic() {
        let good = encode(&[b"ab".to_vec(), b"c".to_vec()]);
        for cut in 0..good.len() {
            assert!(
                Vocabulary::load(leak(good[..cut].to_vec())).is_err(),
                "cut at {cut}"
            );
        }
        let mut zero_length = good.clone();
        zero_length[8] = 0;
        assert!(Vocabulary::load(leak(zero_length)).is_err());
        let mut trailing = good;
        trailing.push(b'x');
        assert!(Vocabulary::load(leak(trailing)).is_err());
        // Another format (or version) of the file.
        assert!(Vocabulary::load(b"TGV0\x00\x00\x00\x00").is_err());
    }
}
