//! Byte-pair merging of one pre-tokenized piece, as tiktoken does it: start from single bytes,
//! repeatedly merge the adjacent pair whose concatenation has the lowest rank (the leftmost
//! one on ties) until no adjacent pair is a token; the count is the parts left.
//!
//! Short pieces (nearly all of them) merge with tiktoken's own quadratic scan over a stack
//! array; longer ones (a client can send a megabyte with no space in it) with a heap and a
//! linked list, O(n log n), so no input makes counting quadratic. Both give tiktoken's result.

use super::vocabulary::Vocabulary;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Pieces up to this many bytes use the scan.
const SCAN_MAX_BYTES: usize = 64;
const NONE: u32 = u32::MAX;

/// Tokens of `piece` (one pre-tokenizer match).
pub fn count_piece(vocabulary: &Vocabulary, piece: &[u8]) -> usize {
    match piece.len() {
        0 => 0,
        1 => 1,
        _ if vocabulary.rank(piece).is_some() => 1,
        len if len <= SCAN_MAX_BYTES => count_by_scan(vocabulary, piece),
        _ => count_by_heap(vocabulary, piece),
    }
}

fn pair_rank(vocabulary: &Vocabulary, piece: &[u8], start: u32, end: u32) -> u32 {
    vocabulary
        .rank(&piece[start as usize..end as usize])
        .unwrap_or(NONE)
}

/// tiktoken's `_byte_pair_merge`: `parts[i]` is a part's start and the rank of it merged with
/// the next part.
fn count_by_scan(vocabulary: &Vocabulary, piece: &[u8]) -> usize {
    let len = piece.len();
    let mut parts = [(0u32, NONE); SCAN_MAX_BYTES + 1];
    let mut count = len + 1;
    for (index, part) in parts.iter_mut().enumerate().take(len + 1) {
        let start = index as u32;
        let rank = if index + 2 <= len {
            pair_rank(vocabulary, piece, start, start + 2)
        } else {
            NONE
        };
        *part = (start, rank);
    }
    // The rank of part `i` merged with the part after it, given the parts after `i + 1`.
    let rank_after_merge = |parts: &[(u32, u32)], count: usize, index: usize| {
        if index + 3 < count {
            pair_rank(vocabulary, piece, parts[index].0, parts[index + 3].0)
        } else {
            NONE
        }
    };
    loop {
        let mut lowest = (NONE, 0);
        for (index, part) in parts[..count - 1].iter().enumerate() {
            if part.1 < lowest.0 {
                lowest = (part.1, index);
            }
        }
        let (rank, index) = lowest;
        if rank == NONE {
            break;
        }
        parts[index].1 = rank_after_merge(&parts, count, index);
        if index > 0 {
            parts[index - 1].1 = rank_after_merge(&parts, count, index - 1);
        }
        parts.copy_within(index + 2..count, index + 1);
        count -= 1;
    }
    count - 1
}

/// The same merges with a min-heap of (rank, start) over a linked list of parts. A heap entry
/// is stale when its part is gone or the part after it has grown; stale entries are skipped.
fn count_by_heap(vocabulary: &Vocabulary, piece: &[u8]) -> usize {
    let len = piece.len() as u32;
    // next[i]: start of the part after the one starting at i (len at the end); prev likewise.
    let mut next: Vec<u32> = (1..=len).collect();
    let mut prev: Vec<u32> = (0..len).map(|start| start.wrapping_sub(1)).collect();
    let mut alive = vec![true; len as usize];
    let mut heap = BinaryHeap::with_capacity(len as usize);
    for start in 0..len - 1 {
        let rank = pair_rank(vocabulary, piece, start, start + 2);
        if rank != NONE {
            heap.push(Reverse((rank, start, start + 2)));
        }
    }
    let mut parts = len as usize;
    let pair_end = |next: &[u32], start: u32| {
        let second = next[start as usize];
        if second >= len {
            None
        } else {
            Some(next[second as usize])
        }
    };
    while let Some(Reverse((_, start, end))) = heap.pop() {
        if !alive[start as usize] || pair_end(&next, start) != Some(end) {
            continue;
        }
        let second = next[start as usize];
        alive[second as usize] = false;
        next[start as usize] = end;
        if end < len {
            prev[end as usize] = start;
        }
        parts -= 1;
        if let Some(new_end) = pair_end(&next, start) {
            let rank = pair_rank(vocabulary, piece, start, new_end);
            if rank != NONE {
                heap.push(Reverse((rank, start, new_end)));
            }
        }
        let before = prev[start as usize];
        if before != NONE {
            let rank = pair_rank(vocabulary, piece, before, end);
            if rank != NONE {
                heap.push(Reverse((rank, before, end)));
            }
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::vocabulary::encode;

    /// A toy vocabulary: every byte, then merges in rank order.
    fn toy(merges: &[&str]) -> Vocabulary {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|byte| vec![byte]).collect();
        tokens.extend(merges.iter().map(|merge| merge.as_bytes().to_vec()));
        Vocabulary::load(Box::leak(encode(&tokens).into_boxed_slice())).unwrap()
    }

    #[test]
    fn merges_lowest_rank_first_and_leftmost_on_ties() {
        let vocabulary = toy(&["aa", "ab", "aaa", "aab"]);
        // "aaab": aa (lowest) at 0 -> [aa][a][b]; then aab? (aa+a = "aaa" rank 258 vs a+b = "ab"
        // 257): ab first -> [aa][ab]; "aaab" is no token -> 2.
        assert_eq!(count_by_scan(&vocabulary, b"aaab"), 2);
        assert_eq!(count_by_heap(&vocabulary, b"aaab"), 2);
        // "aaaa": leftmost aa, then aa -> [aa][aa] = 2.
        assert_eq!(count_by_scan(&vocabulary, b"aaaa"), 2);
        assert_eq!(count_by_heap(&vocabulary, b"aaaa"), 2);
    }

    #[test]
    fn heap_and_scan_agree_on_pseudo_random_pieces() {
        let vocabulary = toy(&[
            "ab", "ba", "aa", "bb", "abc", "cab", "aab", "bba", "abab", "ca", "ac", "cc", "ccc",
            "abca", "bcab",
        ]);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = 2 + (state % 60) as usize;
            let piece: Vec<u8> = (0..len)
                .map(|index| b"abc"[((state >> (index % 60)) % 3) as usize])
                .collect();
            assert_eq!(
                count_by_scan(&vocabulary, &piece),
                count_by_heap(&vocabulary, &piece),
                "{}",
                String::from_utf8_lossy(&piece)
            );
        }
    }

    #[test]
    fn a_long_piece_with_no_merges_counts_its_bytes() {
        let vocabulary = toy(&["ab"]);
        let piece = vec![b'z'; 1 << 20];
        assert_eq!(count_piece(&vocabulary, &piece), 1 << 20);
    }
}
