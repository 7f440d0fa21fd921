#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A client that hangs up cancels the upstream call: the fake provider sees its response
//! abandoned within a second, for streams of every chat wire format and for a non-streaming
//! call still waiting on a slow upstream; and the partial usage is billed
//! (`client_disconnected`).

mod provider_support;

use std::time::{Duration, Instant};

use provider_support::{World, model_name};
use serde_json::json;
use tollgate_e2e::{
    Behavior, FAKE_INPUT_PRICE_MICROS, FAKE_OUTPUT_PRICE_MICROS, WireFormat, chat_body,
    cost_micros, eventually, http_client, usage_rows, wait_for_usage,
};

/// The promise under test: the upstream call is cancelled within this. It is far above the few
/// milliseconds a hang-up takes (so a loaded CI machine never flakes it) and far below how long
/// the upstream would have run on (500 s of stream, a 60 s answer), so a missed cancel fails.
const CANCEL_WITHIN: Duration = Duration::from_secs(15);
/// Generous bound for everything else on a loaded machine.
const GENEROUS: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hanging_up_mid_stream_cancels_the_upstream_within_a_second_and_bills_partial_usage()
{
    let formats = [
        WireFormat::OpenAi,
        WireFormat::Anthropic,
        WireFormat::Gemini,
    ];
    let world = World::start(&formats, &[]).await;
    // A long answer: 20 chunks a second for far longer than the test.
    world.fake.set_behavior(Behavior::SlowStream {
        chunks: 10_000,
        every: Duration::from_millis(50),
    });

    for (done, format) in formats.into_iter().enumerate() {
        let mut request = chat_body(&model_name(format), "tell me a long story");
        request["stream"] = json!(true);
        let mut stream = world
            .stack
            .client()
            .open_chat_stream(Some(world.key()), &request)
            .await
            .unwrap();
        assert_eq!(stream.status, 200, "{format:?}");
        let request_id = stream.header("x-request-id").unwrap().to_owned();
        let mut content_chunks: i64 = 0;
        while content_chunks < 5 {
            let event = stream
                .next_event()
                .await
                .unwrap()
                .expect("stream ended early");
            let chunk: serde_json::Value = serde_json::from_str(&event).unwrap();
            if chunk["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|content| !content.is_empty())
            {
                content_chunks += 1;
            }
        }
        let hung_up = Instant::now();
        drop(stream);

        let disconnects = world.fake.wait_for_disconnects(done + 1, GENEROUS).await;
        let disconnect = &disconnects[done];
        let noticed = disconnect.at.saturating_duration_since(hung_up);
        eprintln!("{format:?}: the upstream saw the hang-up after {noticed:?}");
        assert!(
            noticed < CANCEL_WITHIN,
            "{format:?}: the upstream saw the hang-up after {noticed:?}: {disconnect:?}"
        );
        assert!(
            disconnect.events_sent < 1_000,
            "{format:?}: the upstream stopped early: {disconnect:?}"
        );

        let row = wait_for_usage(&world.stack.db, &request_id).await;
        assert_eq!(row.status, "client_disconnected", "{format:?}: {row:?}");
        assert!(row.input_tokens > 0, "{format:?}: {row:?}");
        assert!(
            row.output_tokens >= content_chunks && row.output_tokens < 1_000,
            "{format:?}: billed for what was produced (the client read {content_chunks} chunks): {row:?}"
        );
        assert_eq!(
            row.cost_micros,
            Some(cost_micros(
                row.input_tokens,
                row.output_tokens,
                FAKE_INPUT_PRICE_MICROS,
                FAKE_OUTPUT_PRICE_MICROS
            )),
            "{format:?}: {row:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hanging_up_during_a_slow_non_streaming_call_cancels_the_upstream() {
    let world = World::start(&[WireFormat::OpenAi], &[]).await;
    world
        .fake
        .set_behavior(Behavior::Latency(Duration::from_secs(60)));
    let url = world.stack.edge.url("/v1/chat/completions");
    let key = world.key().to_owned();
    let body = chat_body(&model_name(WireFormat::OpenAi), "think slowly");
    let client = tokio::spawn(async move {
        http_client()
            .post(url)
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
    });
    eventually(GENEROUS, async || world.fake.request_count() == 1).await;

    let hung_up = Instant::now();
    client.abort();
    let disconnect = world.fake.wait_for_disconnect(GENEROUS).await;
    let noticed = disconnect.at.saturating_duration_since(hung_up);
    eprintln!("non-streaming: the upstream saw the hang-up after {noticed:?}");
    assert!(
        noticed < CANCEL_WITHIN,
        "the upstream saw the hang-up after {noticed:?}: {disconnect:?}"
    );
    assert_eq!(disconnect.events_sent, 0, "{disconnect:?}");

    let rows = eventually(GENEROUS, async || {
        let rows = usage_rows(&world.stack.db).await;
        (!rows.is_empty()).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 1, "one request, one usage row: {rows:?}");
    let row = &rows[0];
    assert_eq!(row.status, "client_disconnected", "{row:?}");
    // The upstream had the prompt: it is billed; nothing was produced.
    assert!(row.input_tokens > 0, "the prompt is billed: {row:?}");
    assert_eq!(row.output_tokens, 0, "nothing was produced: {row:?}");
}
