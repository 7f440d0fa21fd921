//! Streamed chunks reach the client when the upstream sends them. With Nagle's algorithm on the
//! edge's client socket, a write made while an earlier one is unacknowledged waits for the
//! client's delayed ACK (40 ms on Linux): a 21-chunk stream took ~44 ms instead of ~1 ms. The
//! edge sets TCP_NODELAY on every accepted connection (and on upstream ones); this test catches
//! the stall coming back (it fails with the option off).

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::{Behavior, FakeProvider, Stack, chat_body};

/// What the client may see between the first and the last event of a reply the upstream sends
/// all at once (the edge writes it in two or more writes). A Nagle stall adds a delayed-ACK
/// timeout (40 ms); without one the spread is well under a millisecond.
const MAX_SPREAD: Duration = Duration::from_millis(25);
/// Streams sent back to back on one connection. A stall needs the client's kernel to be
/// delaying ACKs, which it did for 3 of 8 such streams in a run with the option off; with 20 a
/// regression cannot hide in a lucky sample (the test fails with the option off).
const STREAMS: usize = 20;
/// Streams allowed over `MAX_SPREAD` for reasons that are not Nagle (a descheduled process on a
/// busy machine).
const NOISE_ALLOWANCE: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_sent_at_once_arrives_at_once() {
    let stack = Stack::start().await;
    let fake = FakeProvider::start().await;
    stack
        .add_fake_openai(&fake, "paced", "paced-model", &[])
        .await;
    fake.set_behavior(Behavior::Normal);
    let mut body = chat_body("paced-model", "hello");
    body["stream"] = json!(true);
    // One client, so the streams share a keep-alive connection as a real client's do: on a
    // request/response connection the client's kernel delays its ACKs, which is what a Nagle
    // stall waits for.
    let client = stack.client();
    let mut spreads = Vec::new();
    for _ in 0..STREAMS {
        let mut stream = client
            .open_chat_stream(Some(&stack.demo.key), &body)
            .await
            .unwrap();
        assert_eq!(stream.status, 200);
        let mut arrivals = Vec::new();
        while stream.next_event().await.unwrap().is_some() {
            arrivals.push(Instant::now());
        }
        assert!(arrivals.len() >= 3, "{} events", arrivals.len());
        spreads.push(arrivals[arrivals.len() - 1] - arrivals[0]);
    }
    let stalled = spreads
        .iter()
        .filter(|spread| **spread >= MAX_SPREAD)
        .count();
    assert!(
        stalled <= NOISE_ALLOWANCE,
        "{stalled} of {STREAMS} streams took {MAX_SPREAD:?} or more from the first event to the last ({spreads:?}): a Nagle/delayed-ACK stall"
    );
}
