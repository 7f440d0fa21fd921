//! What does translating one streamed chunk cost? For each upstream wire format, one SSE event
//! as it arrives in bytes is decoded, translated into the gateway's OpenAI chunk and encoded as
//! the client's `data:` line — the whole per-chunk work of a stream on the edge, minus the
//! network. OpenAI's own format (decode, parse, re-encode) is the baseline the others are
//! compared with. Target: under 10 µs per chunk.
//!
//! Run: `cargo bench -p tollgate-edge-proxy --bench stream_translation`

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tollgate_edge_proxy::api::chat::ChatCompletionChunk;
use tollgate_edge_proxy::providers::anthropic::AnthropicChunks;
use tollgate_edge_proxy::providers::gemini::GeminiChunks;
use tollgate_edge_proxy::providers::openai::OpenAiChunks;
use tollgate_edge_proxy::providers::sse::SseDecoder;
use tollgate_edge_proxy::providers::transport::StreamTranslator;

/// A typical content delta of a few tokens.
const TEXT: &str = " the quick brown fox jumps";

fn openai_event() -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{TEXT}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
    )
}

fn gemini_event() -> String {
    format!(
        "data: {{\"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \"{TEXT}\"}}],\"role\": \"model\"}},\"index\": 0}}],\"usageMetadata\": {{\"promptTokenCount\": 8,\"candidatesTokenCount\": 5,\"totalTokenCount\": 13}},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"DjEvaPGuMaSXz7IPpe3Y6Qo\"}}\n\n"
    )
}

fn anthropic_event() -> String {
    format!(
        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"{TEXT}\"}}}}\n\n"
    )
}

const ANTHROPIC_PRELUDE: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\nevent: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";

/// Decode one event's bytes, translate it, encode each resulting chunk as an SSE line.
fn per_chunk(
    decoder: &mut SseDecoder,
    translator: &mut impl StreamTranslator,
    out: &mut Vec<ChatCompletionChunk>,
    bytes: &[u8],
) -> usize {
    let mut written = 0;
    for event in decoder.feed(bytes).unwrap_or_default() {
        let _ = translator.on_event(&event, out);
        for chunk in out.drain(..) {
            let mut line = b"data: ".to_vec();
            if serde_json::to_writer(&mut line, &chunk).is_ok() {
                line.extend_from_slice(b"\n\n");
                written += line.len();
            }
        }
    }
    written
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_chunk");

    let event = openai_event();
    let mut decoder = SseDecoder::new();
    let mut translator = OpenAiChunks::default();
    let mut out = Vec::new();
    group.bench_function("openai_passthrough", |b| {
        b.iter(|| {
            per_chunk(
                &mut decoder,
                &mut translator,
                &mut out,
                black_box(event.as_bytes()),
            )
        })
    });

    let event = gemini_event();
    let mut decoder = SseDecoder::new();
    let mut translator = GeminiChunks::new("gemini-2.5-flash");
    group.bench_function("gemini", |b| {
        b.iter(|| {
            per_chunk(
                &mut decoder,
                &mut translator,
                &mut out,
                black_box(event.as_bytes()),
            )
        })
    });

    let event = anthropic_event();
    let mut decoder = SseDecoder::new();
    let mut translator = AnthropicChunks::new(false);
    per_chunk(
        &mut decoder,
        &mut translator,
        &mut out,
        ANTHROPIC_PRELUDE.as_bytes(),
    );
    group.bench_function("anthropic", |b| {
        b.iter(|| {
            per_chunk(
                &mut decoder,
                &mut translator,
                &mut out,
                black_box(event.as_bytes()),
            )
        })
    });

    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
