#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every failure a client can meet at the edge, with the exact OpenAI error shape of the
//! contract: status, `error.type`, `error.code`, `error.param`.

use std::time::{Duration, Instant};

use serde_json::json;
use tollgate_e2e::{
    Behavior, Edge, FAKE_API_KEY, FakeProvider, PROPAGATION_TIMEOUT, Stack, chat_body, eventually,
    refusing_port,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_request_bodies_get_400_with_field_in_param() {
    let stack = Stack::start().await;
    let client = stack.client();
    let cases: &[(&str, String, &str, Option<&str>)] = &[
        (
            "malformed JSON",
            r#"{"model": "mock-small", "messages": ["#.to_owned(),
            "invalid_json",
            None,
        ),
        (
            "messages is a string",
            json!({"model": "mock-small", "messages": "x"}).to_string(),
            "invalid_type",
            Some("messages"),
        ),
        (
            "model missing",
            json!({"messages": [{"role": "user", "content": "hi"}]}).to_string(),
            "missing_field",
            Some("model"),
        ),
        (
            "messages missing",
            json!({"model": "mock-small"}).to_string(),
            "missing_field",
            Some("messages"),
        ),
        (
            "messages empty",
            json!({"model": "mock-small", "messages": []}).to_string(),
            "invalid_value",
            Some("messages"),
        ),
    ];

    for (case, body, code, param) in cases {
        let reply = client
            .chat_raw(Some(&stack.demo.key), body.clone())
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{case}: {}", reply.body);
        let error = reply.assert_openai_error(400, "invalid_request_error", code, *param);
        eprintln!("{case}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_unknown_key_gets_401() {
    let stack = Stack::start().await;
    let client = stack.client();
    let body = chat_body("mock-small", "hi");

    let missing = client.chat(None, &body).await.unwrap();
    missing.assert_openai_error(401, "invalid_request_error", "invalid_api_key", None);

    let unknown = client
        .chat(Some("tg_this_key_does_not_exist"), &body)
        .await
        .unwrap();
    unknown.assert_openai_error(401, "invalid_request_error", "invalid_api_key", None);

    let unknown_models = client
        .models(Some("tg_this_key_does_not_exist"))
        .await
        .unwrap();
    unknown_models.assert_openai_error(401, "invalid_request_error", "invalid_api_key", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_gets_401() {
    let stack = Stack::start().await;
    let client = stack.client();
    let key = stack.create_key(&[]).await;
    assert_eq!(
        client
            .chat_status(&key.plaintext, "mock-small")
            .await
            .unwrap(),
        200
    );

    stack.cp.ctl_json(&["keys", "revoke", &key.id]).await;

    let reply = eventually(PROPAGATION_TIMEOUT, async || {
        let reply = client
            .chat(Some(&key.plaintext), &chat_body("mock-small", "hi"))
            .await?;
        anyhow::ensure!(reply.status != 200, "revoked key still accepted");
        Ok::<_, anyhow::Error>(reply)
    })
    .await;
    reply.assert_openai_error(401, "invalid_request_error", "invalid_api_key", None);
    // Other keys are unaffected.
    assert_eq!(
        client
            .chat_status(&stack.demo.key, "mock-small")
            .await
            .unwrap(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_key_gets_401() {
    let stack = Stack::start().await;
    let client = stack.client();
    let expires_at = (chrono::Utc::now() + chrono::Duration::seconds(5))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let key = stack.create_key(&["--expires-at", &expires_at]).await;
    assert_eq!(
        client
            .chat_status(&key.plaintext, "mock-small")
            .await
            .unwrap(),
        200,
        "the key works until {expires_at}"
    );

    let reply = eventually(Duration::from_secs(15), async || {
        let reply = client
            .chat(Some(&key.plaintext), &chat_body("mock-small", "hi"))
            .await?;
        anyhow::ensure!(
            reply.status != 200,
            "key still accepted (expires at {expires_at})"
        );
        Ok::<_, anyhow::Error>(reply)
    })
    .await;
    reply.assert_openai_error(401, "invalid_request_error", "invalid_api_key", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_not_allowed_for_key_gets_403() {
    let stack = Stack::start().await;
    let key = stack.create_key(&["--models", "mock-small"]).await;

    let reply = stack
        .client()
        .chat(Some(&key.plaintext), &chat_body("mock-large", "hi"))
        .await
        .unwrap();

    reply.assert_openai_error(403, "permission_error", "model_not_allowed", Some("model"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_gets_404() {
    let stack = Stack::start().await;

    let reply = stack
        .client()
        .chat(Some(&stack.demo.key), &chat_body("no-such-model", "hi"))
        .await
        .unwrap();

    reply.assert_openai_error(
        404,
        "invalid_request_error",
        "model_not_found",
        Some("model"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_max_body_bytes_gets_413() {
    let stack = Stack::start_with_edge_args(&["--max-body-bytes", "4096"]).await;
    let client = stack.client();

    let small = client
        .chat(Some(&stack.demo.key), &chat_body("mock-small", "hi"))
        .await
        .unwrap();
    assert_eq!(small.status, 200, "a small body is fine: {}", small.body);

    let big = chat_body("mock-small", &"x".repeat(8192));
    let reply = client.chat(Some(&stack.demo.key), &big).await.unwrap();
    reply.assert_openai_error(413, "invalid_request_error", "request_too_large", None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_500_becomes_502_without_leaking_provider_key() {
    let stack = Stack::start().await;
    let fake = FakeProvider::start().await;
    stack.add_fake_openai(&fake, "fake", "fake-gpt", &[]).await;
    fake.set_behavior(Behavior::Status {
        code: 500,
        body: json!({"error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error", "param": null, "code": null
        }})
        .to_string(),
    });

    let reply = stack
        .client()
        .chat(Some(&stack.demo.key), &chat_body("fake-gpt", "hi"))
        .await
        .unwrap();

    let error = reply.assert_openai_error(502, "upstream_error", "upstream_error", None);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("500"),
        "message should name the upstream status: {message}"
    );
    assert!(
        !reply.body.contains(FAKE_API_KEY),
        "provider key leaked: {}",
        reply.body
    );
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_slower_than_provider_timeout_gets_504() {
    let stack = Stack::start().await;
    let fake = FakeProvider::start().await;
    stack
        .add_fake_openai(&fake, "slow", "slow-gpt", &["--timeout-ms", "300"])
        .await;
    fake.set_behavior(Behavior::Latency(Duration::from_secs(60)));

    let started = Instant::now();
    let reply = stack
        .client()
        .chat(Some(&stack.demo.key), &chat_body("slow-gpt", "hi"))
        .await
        .unwrap();
    let elapsed = started.elapsed();

    reply.assert_openai_error(504, "upstream_error", "upstream_total_timeout", None);
    // The upstream answers after 60 s; giving up at ~300 ms shows well under 20 s even on a
    // loaded machine.
    assert!(
        elapsed < Duration::from_secs(20),
        "the edge should give up after ~300 ms, took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_gets_502_upstream_unreachable() {
    let stack = Stack::start().await;
    let (_dead, dead_port) = refusing_port();
    let dead_base_url = format!("http://127.0.0.1:{dead_port}/v1");
    stack
        .cp
        .ctl_json(&[
            "providers",
            "create",
            "dead",
            "--kind",
            "openai",
            "--base-url",
            &dead_base_url,
            "--api-key",
            FAKE_API_KEY,
            "--timeout-ms",
            "2000",
        ])
        .await;
    stack
        .cp
        .ctl_json(&["models", "create", "dead-gpt", "--provider", "dead"])
        .await;
    stack.wait_model_listed("dead-gpt").await;

    let reply = stack
        .client()
        .chat(Some(&stack.demo.key), &chat_body("dead-gpt", "hi"))
        .await
        .unwrap();

    reply.assert_openai_error(502, "upstream_error", "upstream_unreachable", None);
    assert!(
        !reply.body.contains(FAKE_API_KEY),
        "provider key leaked: {}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_upstream_json_gets_502() {
    let stack = Stack::start().await;
    let fake = FakeProvider::start().await;
    stack.add_fake_openai(&fake, "fake", "fake-gpt", &[]).await;
    fake.set_behavior(Behavior::MalformedJson);

    let reply = stack
        .client()
        .chat(Some(&stack.demo.key), &chat_body("fake-gpt", "hi"))
        .await
        .unwrap();

    // The contract fixes only the status and type for this case.
    assert_eq!(reply.status, 502, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"]["type"], "upstream_error", "{body}");
    assert!(
        !reply.body.contains(FAKE_API_KEY),
        "provider key leaked: {}",
        reply.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_cut_by_upstream_ends_with_error_event_and_no_done() {
    let stack = Stack::start().await;
    let fake = FakeProvider::start().await;
    stack.add_fake_openai(&fake, "fake", "fake-gpt", &[]).await;
    // Role chunk and two content chunks, then the connection drops.
    fake.set_behavior(Behavior::CutStreamAfter(3));
    let mut request = chat_body("fake-gpt", "hi");
    request["stream"] = json!(true);

    let reply = stack
        .client()
        .chat_stream(Some(&stack.demo.key), &request)
        .await
        .unwrap();

    assert_eq!(
        reply.status, 200,
        "headers were sent before the cut:\n{}",
        reply.raw
    );
    assert!(
        !reply.has_done(),
        "a broken stream must not end with [DONE]:\n{}",
        reply.raw
    );
    let events = reply.json_events();
    assert!(
        events.len() >= 2,
        "chunks before the cut are relayed:\n{}",
        reply.raw
    );
    assert_eq!(
        events[0]["object"], "chat.completion.chunk",
        "{}",
        reply.raw
    );
    let last = events.last().unwrap();
    let error = &last["error"];
    assert!(
        error.is_object(),
        "the last event must be an error event:\n{}",
        reply.raw
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{last}"
    );
    assert!(error["type"].is_string(), "{last}");
    assert_eq!(reply.error_events().len(), 1, "{}", reply.raw);
    assert!(
        !reply.raw.contains(FAKE_API_KEY),
        "provider key leaked:\n{}",
        reply.raw
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_without_config_answers_503_not_ready() {
    // A control plane that is not there and an empty state dir: the edge has nothing to serve.
    let state = tempfile::tempdir().unwrap();
    let (_nowhere, nowhere_port) = refusing_port();
    let nowhere = format!("http://127.0.0.1:{nowhere_port}");
    let edge = Edge::start(&nowhere, "tgj_not_a_real_token", state.path(), &[]).await;

    assert_eq!(edge.readyz_status().await.unwrap(), 503);
    let reply = edge
        .client()
        .chat(Some("tg_any_key"), &chat_body("mock-small", "hi"))
        .await
        .unwrap();
    reply.assert_openai_error(503, "service_unavailable", "not_ready", None);
}

/// Before: these answers had empty bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_and_oversized_headers_get_openai_errors() {
    let stack = Stack::start().await;
    let http = tollgate_e2e::http_client();
    let reply = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("a JSON error body");
        (
            status,
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    };

    let wrong_method = http.get(stack.edge.url("/v1/chat/completions")).send();
    assert_eq!(
        reply(wrong_method.await.unwrap()).await,
        (405, "method_not_allowed".to_owned())
    );

    let mut many = http.get(stack.edge.url("/v1/models"));
    for i in 0..150 {
        many = many.header(format!("x-filler-{i}"), "1");
    }
    assert_eq!(
        reply(many.send().await.unwrap()).await,
        (431, "request_header_fields_too_large".to_owned())
    );

    let big = http
        .get(stack.edge.url("/v1/models"))
        .header("x-big-1", "a".repeat(40_000))
        .header("x-big-2", "b".repeat(40_000))
        .send();
    assert_eq!(
        reply(big.await.unwrap()).await,
        (431, "request_header_fields_too_large".to_owned())
    );
}
