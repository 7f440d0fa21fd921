//! How long does counting a typical prompt take on the hot path? Counts an 8 KB English-ish
//! prompt with the gateway's counter (`TokenCounter`) and with `tiktoken-rs` (the reference),
//! for o200k_base and cl100k_base. Target: < 0.3 ms for 8 KB. Also a 64 KB "word" with no space
//! (one pre-tokenizer piece, the hostile case for tiktoken's quadratic merge loop).
//!
//! Run: `cargo bench -p tollgate-edge-proxy --bench tokens`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate_edge_proxy::tokens::{Encoding, TokenCounter};

const PROMPT_BYTES: usize = 8 * 1024;

/// Deterministic English-ish text: words, punctuation, numbers, a little code and newlines,
/// cut to exactly `PROMPT_BYTES` (all ASCII, so any cut is a character boundary).
fn english_prompt() -> String {
    const WORDS: &[&str] = &[
        "the",
        "gateway",
        "counts",
        "tokens",
        "before",
        "calling",
        "upstream",
        "model",
        "and",
        "reserves",
        "budget",
        "for",
        "each",
        "request",
        "so",
        "that",
        "limits",
        "hold",
        "across",
        "edges",
        "when",
        "provider",
        "reports",
        "usage",
        "replaces",
        "our",
        "estimate",
        "please",
        "summarize",
        "following",
        "document",
        "in",
        "three",
        "bullet",
        "points",
        "with",
        "a",
        "short",
        "title",
        "customer",
        "asked",
        "about",
        "invoice",
        "refund",
        "policy",
        "weather",
        "Paris",
        "Tokyo",
        "it's",
        "don't",
        "we'll",
        "JSON",
        "API",
        "latency",
        "p99",
        "ms",
    ];
    let mut text = String::with_capacity(PROMPT_BYTES + 64);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut words_in_sentence = 0;
    while text.len() < PROMPT_BYTES {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let pick = usize::try_from(state % 1000).unwrap_or(0);
        let word = WORDS[pick % WORDS.len()];
        if words_in_sentence == 0 {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                text.extend(first.to_uppercase());
                text.push_str(chars.as_str());
            }
        } else {
            text.push_str(word);
        }
        words_in_sentence += 1;
        match pick % 47 {
            0 => text.push_str(", "),
            1 => text.push_str(&format!(" {} ", pick * 37)),
            2 => text.push_str(" `count_text(model, text)` "),
            _ if words_in_sentence > 8 + pick % 9 => {
                text.push_str(if pick % 5 == 0 { ".\n\n" } else { ". " });
                words_in_sentence = 0;
            }
            _ => text.push(' '),
        }
    }
    text.truncate(PROMPT_BYTES);
    text
}

fn count_8kb_prompt(c: &mut Criterion) {
    let text = english_prompt();
    let counter = TokenCounter::new();
    for (encoding, model) in [
        (Encoding::O200kBase, "gpt-4o"),
        (Encoding::Cl100kBase, "gpt-4"),
    ] {
        let reference = match encoding {
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        };
        let mut group = c.benchmark_group(format!("count_8kb_{}", encoding.name()));
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function("tollgate", |b| {
            b.iter(|| counter.count_text(black_box(model), black_box(&text)))
        });
        group.bench_function("tiktoken-rs", |b| {
            b.iter(|| reference.count_ordinary(black_box(&text)))
        });
        group.finish();
    }
}

fn count_64kb_word(c: &mut Criterion) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let word: String = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b"abcdefghijklmnopqrstuvwxyz"[(state % 26) as usize])
        })
        .collect();
    let counter = TokenCounter::new();
    let mut group = c.benchmark_group("count_64kb_word_o200k_base");
    group.throughput(Throughput::Bytes(word.len() as u64));
    group.sample_size(10);
    group.bench_function("tollgate", |b| {
        b.iter(|| counter.count_text(black_box("gpt-4o"), black_box(&word)))
    });
    group.finish();
}

criterion_group!(benches, count_8kb_prompt, count_64kb_word);
criterion_main!(benches);
