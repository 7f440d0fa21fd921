#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Upstream deadlines by phase, set per model with `tollgatectl`: a first token that does not
//! come, a stream that stalls, a call that runs too long. Before the response starts each is a
//! 504 naming the phase (`x-tollgate-timeout-phase`, code `upstream_<phase>_timeout`); after it
//! started, an SSE error event with that code. The ledger records `upstream_timeout`.

mod provider_support;

use std::time::{Duration, Instant};

use provider_support::model_name;
use serde_json::{Value, json};
use tollgate_e2e::{
    Behavior, FakeProvider, HttpReply, PROPAGATION_TIMEOUT, SseReply, Stack, WireFormat, chat_body,
    eventually, wait_for_usage,
};

/// Scripted silence, far beyond every deadline under test.
const STALL: Duration = Duration::from_secs(5);

async fn stack_with(format: WireFormat, model_args: &[&str]) -> (Stack, FakeProvider) {
    let stack = Stack::start().await;
    let fake = FakeProvider::start().await;
    stack
        .add_fake_provider(
            &fake,
            format,
            "timing",
            &model_name(format),
            &[],
            model_args,
        )
        .await;
    (stack, fake)
}

fn stream_body(model: &str) -> Value {
    let mut body = chat_body(model, "hi");
    body["stream"] = json!(true);
    body
}

#[track_caller]
fn assert_timeout_504(reply: &HttpReply, phase: &str) {
    reply.assert_openai_error(
        504,
        "upstream_error",
        &format!("upstream_{phase}_timeout"),
        None,
    );
    assert_eq!(
        reply.header("x-tollgate-timeout-phase"),
        Some(phase),
        "{}",
        reply.body
    );
}

#[track_caller]
fn assert_timeout_event(reply: &SseReply, phase: &str) {
    assert_eq!(reply.status, 200, "{}", reply.raw);
    assert!(
        !reply.has_done(),
        "a timed-out stream has no [DONE]:\n{}",
        reply.raw
    );
    let errors = reply.error_events();
    assert_eq!(errors.len(), 1, "one error event:\n{}", reply.raw);
    assert_eq!(
        errors[0]["error"]["code"],
        format!("upstream_{phase}_timeout"),
        "{}",
        reply.raw
    );
    let last = reply.json_events().pop().unwrap();
    assert!(
        last.get("error").is_some(),
        "the error event is last:\n{}",
        reply.raw
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_token_timeout_before_the_headers_is_a_504_naming_the_phase() {
    let (stack, fake) = stack_with(WireFormat::OpenAi, &["--first-token-timeout-ms", "300"]).await;
    fake.set_behavior(Behavior::Latency(STALL));

    let started = Instant::now();
    let reply = stack
        .client()
        .chat(
            Some(&stack.demo.key),
            &stream_body(&model_name(WireFormat::OpenAi)),
        )
        .await
        .unwrap();
    assert_timeout_504(&reply, "first_token");
    assert!(
        started.elapsed() < STALL,
        "the edge gave up before the upstream answered"
    );
    let row = wait_for_usage(&stack.db, reply.request_id().unwrap()).await;
    assert_eq!(
        (row.status.as_str(), row.http_status),
        ("upstream_timeout", 504),
        "{row:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_token_timeout_after_the_upstreams_headers_is_still_a_504() {
    let (stack, fake) =
        stack_with(WireFormat::Anthropic, &["--first-token-timeout-ms", "300"]).await;
    fake.set_behavior(Behavior::FirstEventDelay(STALL));

    let reply = stack
        .client()
        .chat_stream(
            Some(&stack.demo.key),
            &stream_body(&model_name(WireFormat::Anthropic)),
        )
        .await
        .unwrap();
    // The edge holds its own headers until the first output, so the client gets a status.
    assert_eq!(reply.status, 504, "{}", reply.raw);
    assert_eq!(
        reply.header("x-tollgate-timeout-phase"),
        Some("first_token")
    );
    let body: serde_json::Value = serde_json::from_str(&reply.raw).unwrap();
    assert_eq!(
        body["error"]["code"], "upstream_first_token_timeout",
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_timeout_is_a_504_naming_the_phase() {
    let (stack, fake) = stack_with(WireFormat::Gemini, &["--total-timeout-ms", "400"]).await;
    fake.set_behavior(Behavior::Latency(STALL));

    let started = Instant::now();
    let reply = stack
        .client()
        .chat(
            Some(&stack.demo.key),
            &chat_body(&model_name(WireFormat::Gemini), "hi"),
        )
        .await
        .unwrap();
    assert_timeout_504(&reply, "total");
    assert!(started.elapsed() < STALL);
    let row = wait_for_usage(&stack.db, reply.request_id().unwrap()).await;
    assert_eq!(row.status, "upstream_timeout", "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_gap_mid_stream_ends_it_with_an_error_event_and_bills_what_came() {
    for format in [WireFormat::OpenAi, WireFormat::Anthropic] {
        let (stack, fake) = stack_with(format, &["--idle-timeout-ms", "400"]).await;
        // OpenAI: role + 2 content chunks; Anthropic: start, block start, ping + 2 deltas.
        let before_gap = if format == WireFormat::OpenAi { 3 } else { 5 };
        fake.set_behavior(Behavior::GapAfter {
            events: before_gap,
            gap: STALL,
        });

        let reply = stack
            .client()
            .chat_stream(Some(&stack.demo.key), &stream_body(&model_name(format)))
            .await
            .unwrap();
        assert_timeout_event(&reply, "idle");
        assert_eq!(reply.content(), "Hello from", "{format:?}:\n{}", reply.raw);
        let row = wait_for_usage(&stack.db, reply.header("x-request-id").unwrap()).await;
        assert_eq!(row.status, "upstream_timeout", "{format:?}: {row:?}");
        assert!(row.output_tokens > 0, "{format:?}: {row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_stream_is_not_idle() {
    let (stack, fake) = stack_with(WireFormat::OpenAi, &["--idle-timeout-ms", "1500"]).await;
    fake.set_behavior(Behavior::SlowStream {
        chunks: 8,
        every: Duration::from_millis(200),
    });
    let reply = stack
        .client()
        .chat_stream(
            Some(&stack.demo.key),
            &stream_body(&model_name(WireFormat::OpenAi)),
        )
        .await
        .unwrap();
    assert!(reply.has_done(), "{}", reply.raw);
    assert!(reply.error_events().is_empty(), "{}", reply.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_timeouts_changes_a_models_deadline_for_the_next_requests() {
    let (stack, fake) = stack_with(WireFormat::OpenAi, &[]).await;
    let model = model_name(WireFormat::OpenAi);
    fake.set_behavior(Behavior::Latency(Duration::from_millis(1500)));
    // Default deadlines: a 1.5 s first token is fine.
    let slow = stack
        .client()
        .chat_stream(Some(&stack.demo.key), &stream_body(&model))
        .await
        .unwrap();
    assert!(slow.has_done(), "{}", slow.raw);

    stack
        .cp
        .ctl_json(&[
            "models",
            "set-timeouts",
            &model,
            "--first-token-timeout-ms",
            "300",
        ])
        .await;
    let client = stack.client();
    let reply = eventually(PROPAGATION_TIMEOUT, async || {
        let reply = client
            .chat(Some(&stack.demo.key), &stream_body(&model))
            .await?;
        anyhow::ensure!(
            reply.status == 504,
            "still {}: {}",
            reply.status,
            reply.body
        );
        Ok::<_, anyhow::Error>(reply)
    })
    .await;
    assert_timeout_504(&reply, "first_token");
}
