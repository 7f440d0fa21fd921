#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Every provider kind end to end: a client speaking OpenAI's API reaches the fake provider
//! in that provider's own wire format (OpenAI, Azure OpenAI, Anthropic, Gemini) and gets
//! OpenAI's shapes back: content, finish reason, usage, tool calls (whole and streamed), and
//! one ledger row per request with the provider's tokens and their cost.

mod provider_support;

use provider_support::{
    World, assert_upstream_chat, expected_arguments, model_name, provider_name,
    streamed_tool_calls, tools_body,
};
use serde_json::{Value, json};
use tollgate_e2e::{
    FAKE_API_KEY, FAKE_COMPLETION_TOKENS, FAKE_CONTENT, FAKE_INPUT_PRICE_MICROS,
    FAKE_OUTPUT_PRICE_MICROS, FAKE_PROMPT_TOKENS, FAKE_TOOL_CALL_TOKENS, TokenUsage, WireFormat,
    assert_chat_completion, assert_chat_stream, chat_body, cost_micros, wait_for_usage,
};

const TEXT_USAGE: TokenUsage = TokenUsage {
    prompt_tokens: FAKE_PROMPT_TOKENS,
    completion_tokens: FAKE_COMPLETION_TOKENS,
    total_tokens: FAKE_PROMPT_TOKENS + FAKE_COMPLETION_TOKENS,
};

/// Non-streaming chat: content, finish reason, usage, the upstream request, the ledger row.
async fn plain_chat(world: &World, format: WireFormat) {
    let model = model_name(format);
    let reply = world
        .stack
        .client()
        .chat(Some(world.key()), &chat_body(&model, "Hi upstream"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    let usage = assert_chat_completion(&body, None);
    assert_eq!(
        body["choices"][0]["message"]["content"], FAKE_CONTENT,
        "{body}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
    assert_eq!(usage, TEXT_USAGE, "{body}");
    assert!(
        !reply.body.contains(FAKE_API_KEY),
        "provider key leaked: {body}"
    );
    assert_upstream_chat(
        format,
        &world.fake.last_request().unwrap(),
        false,
        world.key(),
    );

    let row = wait_for_usage(&world.stack.db, reply.request_id().unwrap()).await;
    assert_eq!(
        (row.status.as_str(), row.usage_source.as_str()),
        ("ok", "provider"),
        "{row:?}"
    );
    assert_eq!(row.provider, provider_name(format), "{row:?}");
    assert_eq!(row.model, model, "{row:?}");
    let (input, output) = (FAKE_PROMPT_TOKENS as i64, FAKE_COMPLETION_TOKENS as i64);
    assert_eq!((row.input_tokens, row.output_tokens), (input, output));
    assert_eq!(
        row.cost_micros,
        Some(cost_micros(
            input,
            output,
            FAKE_INPUT_PRICE_MICROS,
            FAKE_OUTPUT_PRICE_MICROS
        ))
    );
}

/// Streaming chat, with and without `include_usage`.
async fn streamed_chat(world: &World, format: WireFormat) {
    let model = model_name(format);
    let client = world.stack.client();
    let mut request = chat_body(&model, "Hi upstream");
    request["stream"] = json!(true);

    let quiet = client
        .chat_stream(Some(world.key()), &request)
        .await
        .unwrap();
    assert_eq!(assert_chat_stream(&quiet, None, false), None);
    assert_eq!(quiet.content(), FAKE_CONTENT, "{}", quiet.raw);
    assert_upstream_chat(
        format,
        &world.fake.last_request().unwrap(),
        true,
        world.key(),
    );

    request["stream_options"] = json!({"include_usage": true});
    let counted = client
        .chat_stream(Some(world.key()), &request)
        .await
        .unwrap();
    let usage = assert_chat_stream(&counted, None, true).unwrap();
    assert_eq!(counted.content(), FAKE_CONTENT, "{}", counted.raw);
    assert_eq!(usage, TEXT_USAGE, "{}", counted.raw);
    let finish: Vec<Value> = counted
        .json_events()
        .into_iter()
        .filter_map(|chunk| {
            let reason = chunk["choices"][0]["finish_reason"].clone();
            (!reason.is_null()).then_some(reason)
        })
        .collect();
    assert_eq!(finish, vec![json!("stop")], "{}", counted.raw);
    assert!(!counted.raw.contains(FAKE_API_KEY), "provider key leaked");

    let row = wait_for_usage(&world.stack.db, counted.header("x-request-id").unwrap()).await;
    assert_eq!(row.status, "ok", "{row:?}");
    assert!(row.stream, "{row:?}");
    assert_eq!(
        (row.input_tokens, row.output_tokens),
        (FAKE_PROMPT_TOKENS as i64, FAKE_COMPLETION_TOKENS as i64),
        "{row:?}"
    );
}

/// Tool calls, whole and streamed: the arguments the client reassembles equal the fake's.
async fn tool_calls(world: &World, format: WireFormat) {
    let model = model_name(format);
    let client = world.stack.client();

    let reply = client
        .chat(Some(world.key()), &tools_body(&model, false))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{body}");
    assert!(
        calls[0]["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    assert_eq!(calls[0]["type"], "function", "{body}");
    assert_eq!(calls[0]["function"]["name"], "get_weather", "{body}");
    let arguments: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, expected_arguments(), "{body}");
    if format == WireFormat::Anthropic {
        assert!(
            calls[0]["id"].as_str().unwrap().starts_with("toolu_"),
            "Anthropic's tool_use id is kept: {body}"
        );
    }
    assert_eq!(
        body["usage"]["completion_tokens"], FAKE_TOOL_CALL_TOKENS,
        "{body}"
    );
    let upstream = world.fake.last_request().unwrap();
    assert!(
        upstream.contains("get_weather"),
        "the tool reached the upstream: {}",
        upstream.body
    );

    let streamed = client
        .chat_stream(Some(world.key()), &tools_body(&model, true))
        .await
        .unwrap();
    let usage = assert_chat_stream(&streamed, None, true).unwrap();
    let calls = streamed_tool_calls(&streamed);
    assert_eq!(calls.len(), 1, "{}", streamed.raw);
    assert_eq!(calls[0].name, "get_weather", "{}", streamed.raw);
    let arguments: Value = serde_json::from_str(&calls[0].arguments)
        .unwrap_or_else(|error| panic!("{error}: {}\n{}", calls[0].arguments, streamed.raw));
    assert_eq!(arguments, expected_arguments(), "{}", streamed.raw);
    let last_choice = streamed
        .json_events()
        .into_iter()
        .filter(|chunk| !chunk["choices"][0]["finish_reason"].is_null())
        .collect::<Vec<_>>();
    assert_eq!(last_choice.len(), 1, "{}", streamed.raw);
    assert_eq!(
        last_choice[0]["choices"][0]["finish_reason"], "tool_calls",
        "{}",
        streamed.raw
    );
    assert_eq!(usage.completion_tokens, FAKE_TOOL_CALL_TOKENS);
}

async fn exercise(format: WireFormat) {
    let world = World::start(&[format], &[]).await;
    plain_chat(&world, format).await;
    streamed_chat(&world, format).await;
    tool_calls(&world, format).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_kind_chat_stream_and_tool_calls_round_trip_and_are_billed() {
    exercise(WireFormat::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_openai_kind_chat_stream_and_tool_calls_round_trip_and_are_billed() {
    exercise(WireFormat::AzureOpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_kind_chat_stream_and_tool_calls_round_trip_and_are_billed() {
    exercise(WireFormat::Anthropic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemini_kind_chat_stream_and_tool_calls_round_trip_and_are_billed() {
    exercise(WireFormat::Gemini).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_cut_maps_to_length_for_every_kind() {
    let world = World::start(&WireFormat::ALL, &[]).await;
    for format in WireFormat::ALL {
        let mut request = chat_body(&model_name(format), "Tell me more");
        request["max_tokens"] = json!(2);
        let reply = world
            .stack
            .client()
            .chat(Some(world.key()), &request)
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{format:?}: {}", reply.body);
        let body = reply.json();
        assert_eq!(
            body["choices"][0]["finish_reason"], "length",
            "{format:?}: {body}"
        );
        assert_eq!(
            body["choices"][0]["message"]["content"], "Hello from",
            "{format:?}: {body}"
        );
        assert_eq!(body["usage"]["completion_tokens"], 2, "{format:?}: {body}");
    }
}
