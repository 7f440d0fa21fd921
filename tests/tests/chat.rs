#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Chat completions and model listing through a connected edge: the built-in mock provider
//! and an OpenAI-compatible upstream (the fake provider), non-streaming and streaming.

use serde_json::json;
use tollgate_e2e::{
    FAKE_API_KEY, FAKE_COMPLETION_TOKENS, FAKE_CONTENT, FAKE_PROMPT_TOKENS, FAKE_UPSTREAM_MODEL,
    FakeProvider, Stack, TokenUsage, assert_chat_completion, assert_chat_stream, chat_body,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_chat_returns_openai_completion_with_usage() {
    let stack = Stack::start().await;

    let reply = stack
        .client()
        .chat(Some(&stack.demo.key), &chat_body("mock-small", "Say hello"))
        .await
        .unwrap();

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.request_id().is_some(), "x-request-id missing");
    assert!(
        reply
            .header("content-type")
            .is_some_and(|value| value.starts_with("application/json")),
        "content-type {:?}",
        reply.header("content-type")
    );
    let body = reply.json();
    let usage = assert_chat_completion(&body, Some("mock-small"));
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
    assert!(usage.completion_tokens > 0, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_chat_stops_at_max_tokens_with_length_finish_reason() {
    let stack = Stack::start().await;
    let mut request = chat_body("mock-small", "Tell me a long story");
    request["max_tokens"] = json!(3);

    let reply = stack
        .client()
        .chat(Some(&stack.demo.key), &request)
        .await
        .unwrap();

    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    let usage = assert_chat_completion(&body, Some("mock-small"));
    assert_eq!(usage.completion_tokens, 3, "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "length", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_stream_ends_with_done_and_has_usage_chunk_only_when_asked() {
    let stack = Stack::start().await;
    let client = stack.client();
    let mut request = chat_body("mock-small", "Say hello");
    request["stream"] = json!(true);

    let without_usage = client
        .chat_stream(Some(&stack.demo.key), &request)
        .await
        .unwrap();
    assert!(
        without_usage.header("x-request-id").is_some(),
        "x-request-id missing on a stream"
    );
    assert_eq!(
        assert_chat_stream(&without_usage, Some("mock-small"), false),
        None
    );

    request["stream_options"] = json!({"include_usage": true});
    let with_usage = client
        .chat_stream(Some(&stack.demo.key), &request)
        .await
        .unwrap();
    let usage = assert_chat_stream(&with_usage, Some("mock-small"), true).unwrap();
    assert!(usage.completion_tokens > 0, "{}", with_usage.raw);

    // The same prompt without streaming reports the same usage.
    let plain = client
        .chat(Some(&stack.demo.key), &chat_body("mock-small", "Say hello"))
        .await
        .unwrap();
    assert_eq!(plain.status, 200, "{}", plain.body);
    assert_eq!(
        assert_chat_completion(&plain.json(), Some("mock-small")),
        usage
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_provider_chat_sends_upstream_model_and_provider_key() {
    let stack = Stack::start().await;
    let fake = FakeProvider::start().await;
    stack.add_fake_openai(&fake, "fake", "fake-gpt", &[]).await;
    let key = stack.create_key(&["--models", "fake-gpt"]).await;

    let reply = stack
        .client()
        .chat(Some(&key.plaintext), &chat_body("fake-gpt", "Hi upstream"))
        .await
        .unwrap();

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.request_id().is_some(), "x-request-id missing");
    let body = reply.json();
    let usage = assert_chat_completion(&body, None);
    assert_eq!(
        body["choices"][0]["message"]["content"], FAKE_CONTENT,
        "{body}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
    assert_eq!(
        usage,
        TokenUsage {
            prompt_tokens: FAKE_PROMPT_TOKENS,
            completion_tokens: FAKE_COMPLETION_TOKENS,
            total_tokens: FAKE_PROMPT_TOKENS + FAKE_COMPLETION_TOKENS,
        }
    );

    assert_eq!(
        fake.request_count(),
        1,
        "one client request, one upstream request"
    );
    let upstream = fake.last_request().unwrap();
    assert_eq!(upstream.method, "POST");
    assert_eq!(upstream.path, "/v1/chat/completions");
    assert_eq!(
        upstream.body["model"], FAKE_UPSTREAM_MODEL,
        "{}",
        upstream.body
    );
    assert_eq!(
        upstream.body["messages"][0]["content"], "Hi upstream",
        "{}",
        upstream.body
    );
    let expected_authorization = format!("Bearer {FAKE_API_KEY}");
    assert_eq!(
        upstream.header("authorization"),
        Some(expected_authorization.as_str())
    );
    assert!(
        !upstream.contains(&key.plaintext),
        "the client's virtual key must not be forwarded upstream"
    );
    assert!(
        !reply.body.contains(FAKE_API_KEY),
        "provider key leaked to the client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_provider_stream_relays_chunks_and_usage_only_when_asked() {
    let stack = Stack::start().await;
    let fake = FakeProvider::start().await;
    stack.add_fake_openai(&fake, "fake", "fake-gpt", &[]).await;
    let key = stack.create_key(&["--models", "fake-gpt"]).await;
    let client = stack.client();
    let mut request = chat_body("fake-gpt", "Hi upstream");
    request["stream"] = json!(true);

    let without_usage = client
        .chat_stream(Some(&key.plaintext), &request)
        .await
        .unwrap();
    assert_eq!(assert_chat_stream(&without_usage, None, false), None);
    assert_eq!(without_usage.content(), FAKE_CONTENT);
    let upstream = fake.last_request().unwrap();
    assert_eq!(
        upstream.body["model"], FAKE_UPSTREAM_MODEL,
        "{}",
        upstream.body
    );
    assert_eq!(upstream.body["stream"], true, "{}", upstream.body);
    assert_eq!(
        upstream.body["stream_options"]["include_usage"], true,
        "the edge always asks upstream for usage: {}",
        upstream.body
    );
    assert_eq!(
        upstream.header("authorization"),
        Some(format!("Bearer {FAKE_API_KEY}").as_str())
    );

    request["stream_options"] = json!({"include_usage": true});
    let with_usage = client
        .chat_stream(Some(&key.plaintext), &request)
        .await
        .unwrap();
    let usage = assert_chat_stream(&with_usage, None, true).unwrap();
    assert_eq!(with_usage.content(), FAKE_CONTENT);
    assert_eq!(usage.prompt_tokens, FAKE_PROMPT_TOKENS);
    assert_eq!(usage.completion_tokens, FAKE_COMPLETION_TOKENS);
    assert!(
        !with_usage.raw.contains(FAKE_API_KEY),
        "provider key leaked to the client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_list_shows_only_models_the_key_may_use() {
    let stack = Stack::start().await;
    let client = stack.client();
    let restricted = stack.create_key(&["--models", "mock-small"]).await;

    let reply = client.models(Some(&restricted.plaintext)).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["object"], "list", "{body}");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{body}");
    assert_eq!(data[0]["id"], "mock-small", "{body}");
    assert_eq!(data[0]["object"], "model", "{body}");
    assert_eq!(data[0]["owned_by"], "mock", "{body}");
    assert!(data[0]["created"].is_u64(), "{body}");

    // The demo key may use every model: it sees exactly the control plane's model list.
    let mut all_models: Vec<String> = stack.cp.ctl_json(&["models", "list"]).await["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["name"].as_str().unwrap().to_owned())
        .collect();
    all_models.sort();
    assert!(
        all_models.contains(&"mock-large".to_owned()),
        "{all_models:?}"
    );
    let demo_ids = client.model_ids(&stack.demo.key).await.unwrap();
    assert_eq!(demo_ids, all_models);
}
