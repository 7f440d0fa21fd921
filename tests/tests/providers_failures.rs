#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Upstream failures through every provider kind: the fake answers in the provider's own
//! error shape (or breaks its stream), and the client gets the gateway's one mapping: 429
//! with Retry-After, 400 `upstream_invalid_request`, 502, or an SSE error event once the
//! stream has started; the ledger records each with its status.

mod provider_support;

use provider_support::{World, model_name};
use serde_json::json;
use tollgate_e2e::{Behavior, FAKE_API_KEY, WireFormat, chat_body, wait_for_usage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_429_becomes_429_with_retry_after_for_every_kind() {
    let world = World::start(&WireFormat::ALL, &[]).await;
    world.fake.set_behavior(Behavior::RateLimited {
        retry_after_secs: 7,
    });
    for format in WireFormat::ALL {
        let reply = world
            .stack
            .client()
            .chat(Some(world.key()), &chat_body(&model_name(format), "hi"))
            .await
            .unwrap();
        reply.assert_openai_error(429, "rate_limit_error", "upstream_rate_limited", None);
        // Gemini says when to retry in a RetryInfo detail, not a header; the edge turns it
        // into Retry-After like the others' header.
        assert_eq!(reply.header("retry-after"), Some("7"), "{format:?}");
        let row = wait_for_usage(&world.stack.db, reply.request_id().unwrap()).await;
        assert_eq!(row.status, "upstream_error", "{format:?}: {row:?}");
        assert_eq!(row.http_status, 429, "{format:?}: {row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_500_becomes_502_and_upstream_400_stays_400_for_every_kind() {
    let world = World::start(&WireFormat::ALL, &[]).await;
    let client = world.stack.client();

    world.fake.set_behavior(Behavior::Error {
        status: 500,
        message: "The server had an error while processing your request.".to_owned(),
    });
    for format in WireFormat::ALL {
        let reply = client
            .chat(Some(world.key()), &chat_body(&model_name(format), "hi"))
            .await
            .unwrap();
        let error = reply.assert_openai_error(502, "upstream_error", "upstream_error", None);
        assert!(
            error["message"].as_str().unwrap().contains("500"),
            "{format:?}: the message names the upstream status: {error}"
        );
    }

    world.fake.set_behavior(Behavior::Error {
        status: 400,
        message: "Invalid value for 'temperature': must be at most 2.".to_owned(),
    });
    for format in WireFormat::ALL {
        let reply = client
            .chat(Some(world.key()), &chat_body(&model_name(format), "hi"))
            .await
            .unwrap();
        let error = reply.assert_openai_error(
            400,
            "invalid_request_error",
            "upstream_invalid_request",
            None,
        );
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("must be at most 2"),
            "{format:?}: the upstream's own message is passed on: {error}"
        );
        let row = wait_for_usage(&world.stack.db, reply.request_id().unwrap()).await;
        assert_eq!(
            (row.status.as_str(), row.http_status),
            ("upstream_error", 400),
            "{format:?}: {row:?}"
        );
    }
}

/// Body pieces to send before the cut, per format, so that some content got through.
fn pieces_before_cut(format: WireFormat) -> usize {
    match format {
        // role chunk + 2 content chunks
        WireFormat::OpenAi => 3,
        // prompt-filter chunk + role chunk + 2 content chunks
        WireFormat::AzureOpenAi => 4,
        // message_start, content_block_start, ping + 2 text deltas
        WireFormat::Anthropic => 5,
        // 2 content chunks
        WireFormat::Gemini => 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_by_any_upstream_ends_with_an_error_event_and_is_recorded_as_upstream_error() {
    let world = World::start(&WireFormat::ALL, &[]).await;
    for format in WireFormat::ALL {
        world
            .fake
            .set_behavior(Behavior::CutStreamAfter(pieces_before_cut(format)));
        let mut request = chat_body(&model_name(format), "hi");
        request["stream"] = json!(true);
        let reply = world
            .stack
            .client()
            .chat_stream(Some(world.key()), &request)
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{format:?}:\n{}", reply.raw);
        assert!(!reply.has_done(), "{format:?}: no [DONE]:\n{}", reply.raw);
        assert_eq!(
            reply.content(),
            "Hello from",
            "{format:?}: what came before the cut is relayed:\n{}",
            reply.raw
        );
        let events = reply.json_events();
        let last = events.last().unwrap();
        assert_eq!(
            reply.error_events().len(),
            1,
            "{format:?}: exactly one error event:\n{}",
            reply.raw
        );
        assert_eq!(
            last["error"]["type"], "upstream_error",
            "{format:?}: {last}"
        );
        assert_eq!(
            last["error"]["code"], "upstream_error",
            "{format:?}: {last}"
        );
        assert!(!reply.raw.contains(FAKE_API_KEY), "provider key leaked");

        let row = wait_for_usage(&world.stack.db, reply.header("x-request-id").unwrap()).await;
        assert_eq!(row.status, "upstream_error", "{format:?}: {row:?}");
        assert!(
            row.output_tokens > 0,
            "{format:?}: billed for what was produced: {row:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_error_event_mid_stream_becomes_an_sse_error_event_for_every_kind() {
    let world = World::start(&WireFormat::ALL, &[]).await;
    for format in WireFormat::ALL {
        world.fake.set_behavior(Behavior::ErrorEventAfter {
            events: pieces_before_cut(format),
            // Anthropic's overloaded_error; a plain server error elsewhere.
            status: if format == WireFormat::Anthropic {
                529
            } else {
                500
            },
            message: "Overloaded".to_owned(),
        });
        let mut request = chat_body(&model_name(format), "hi");
        request["stream"] = json!(true);
        let reply = world
            .stack
            .client()
            .chat_stream(Some(world.key()), &request)
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{format:?}:\n{}", reply.raw);
        assert!(!reply.has_done(), "{format:?}:\n{}", reply.raw);
        assert_eq!(reply.content(), "Hello from", "{format:?}:\n{}", reply.raw);
        let errors = reply.error_events();
        assert_eq!(errors.len(), 1, "{format:?}:\n{}", reply.raw);
        assert_eq!(errors[0]["error"]["type"], "upstream_error", "{format:?}");
        assert!(
            errors[0]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Overloaded"),
            "{format:?}: the upstream's message is passed on: {}",
            errors[0]
        );
        let last = reply.json_events().pop().unwrap();
        assert!(
            last.get("error").is_some(),
            "{format:?}: error last:\n{}",
            reply.raw
        );
        let row = wait_for_usage(&world.stack.db, reply.header("x-request-id").unwrap()).await;
        assert_eq!(row.status, "upstream_error", "{format:?}: {row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upstream_json_is_a_502_or_an_error_event_for_every_kind() {
    let world = World::start(&WireFormat::ALL, &[]).await;
    world.fake.set_behavior(Behavior::MalformedJson);
    let client = world.stack.client();
    for format in WireFormat::ALL {
        let model = model_name(format);
        let reply = client
            .chat(Some(world.key()), &chat_body(&model, "hi"))
            .await
            .unwrap();
        assert_eq!(reply.status, 502, "{format:?}: {}", reply.body);
        assert_eq!(
            reply.json()["error"]["type"],
            "upstream_error",
            "{format:?}"
        );

        let mut request = chat_body(&model, "hi");
        request["stream"] = json!(true);
        let streamed = client
            .chat_stream(Some(world.key()), &request)
            .await
            .unwrap();
        // Garbage before any output still gets a status (the fake's OpenAI, Azure and
        // Anthropic streams break at once); after output (Gemini's breaks after its first
        // chunk), a final error event.
        assert!(!streamed.has_done(), "{format:?}:\n{}", streamed.raw);
        let expected_status = if format == WireFormat::Gemini {
            200
        } else {
            502
        };
        assert_eq!(
            streamed.status, expected_status,
            "{format:?}:\n{}",
            streamed.raw
        );
        let error = if streamed.status == 200 {
            let errors = streamed.error_events();
            assert_eq!(errors.len(), 1, "{format:?}:\n{}", streamed.raw);
            errors[0].clone()
        } else {
            assert_eq!(streamed.status, 502, "{format:?}:\n{}", streamed.raw);
            serde_json::from_str(&streamed.raw).unwrap()
        };
        assert_eq!(error["error"]["type"], "upstream_error", "{format:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_provider_credentials_fail_without_leaking_the_key() {
    let world = World::start(&WireFormat::ALL, &[]).await;
    // The providers still send FAKE_API_KEY; the fake now wants another one.
    world.fake.set_api_key("sk-rotated-key-000000000");
    for format in WireFormat::ALL {
        let reply = world
            .stack
            .client()
            .chat(Some(world.key()), &chat_body(&model_name(format), "hi"))
            .await
            .unwrap();
        // Gemini answers a wrong key with 400 INVALID_ARGUMENT (API_KEY_INVALID): the edge
        // still reports it as the gateway's credential problem, like everyone's 401/403.
        reply.assert_openai_error(502, "upstream_error", "upstream_error", None);
        assert!(
            !reply.body.contains(FAKE_API_KEY) && !reply.body.contains("sk-tes"),
            "{format:?}: no part of the provider key may reach the client: {}",
            reply.body
        );
    }
}
