#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Anthropic's Messages API on the edge (`POST /v1/messages`), routed to any provider: the
//! demo mock, an OpenAI provider, a Gemini provider. Requests and answers are translated both
//! ways, streams follow Anthropic's event order, tools round-trip, errors come in Anthropic's
//! shape.

mod provider_support;

use provider_support::{World, expected_arguments, model_name};
use serde_json::{Value, json};
use tollgate_e2e::{
    AnthropicStream, Behavior, FAKE_COMPLETION_TOKENS, FAKE_CONTENT, FAKE_GEMINI_MODEL,
    FAKE_PROMPT_TOKENS, FAKE_UPSTREAM_MODEL, Stack, WireFormat, assert_anthropic_error,
    messages_body, wait_for_usage,
};

/// Asserts an Anthropic `message` answer with one text block; returns the text.
#[track_caller]
fn assert_text_message(body: &Value, model: &str) -> String {
    assert_eq!(body["type"], "message", "{body}");
    assert_eq!(body["role"], "assistant", "{body}");
    assert!(
        body["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    assert_eq!(body["model"], model, "{body}");
    assert_eq!(body["content"][0]["type"], "text", "{body}");
    assert_eq!(body["stop_reason"], "end_turn", "{body}");
    assert!(body["usage"]["input_tokens"].is_u64(), "{body}");
    assert!(body["usage"]["output_tokens"].is_u64(), "{body}");
    body["content"][0]["text"].as_str().unwrap().to_owned()
}

fn streaming(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_api_serves_the_demo_mock_whole_and_streamed() {
    let stack = Stack::start().await;
    let client = stack.client();
    let request = messages_body("mock-small", "Say hello", 64);

    let reply = client
        .messages(Some(&stack.demo.key), &request)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let text = assert_text_message(&reply.json(), "mock-small");
    assert!(!text.is_empty());

    let stream = client
        .messages_stream(Some(&stack.demo.key), &streaming(request))
        .await
        .unwrap();
    stream.assert_event_order();
    assert_eq!(stream.text(), text, "the same prompt gives the same reply");
    assert_eq!(
        stream.first("message_delta")["delta"]["stop_reason"],
        "end_turn"
    );
    assert!(
        stream.first("message_delta")["usage"]["output_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_api_routes_to_an_openai_provider_and_translates_both_ways() {
    let world = World::start(&[WireFormat::OpenAi], &[]).await;
    let model = model_name(WireFormat::OpenAi);
    let client = world.stack.client();
    let mut request = messages_body(&model, "Hi upstream", 100);
    request["system"] = json!("Be brief.");
    request["temperature"] = json!(0.5);
    request["stop_sequences"] = json!(["END"]);

    let reply = client.messages(Some(world.key()), &request).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(assert_text_message(&body, &model), FAKE_CONTENT);
    assert_eq!(body["usage"]["input_tokens"], FAKE_PROMPT_TOKENS, "{body}");
    assert_eq!(
        body["usage"]["output_tokens"], FAKE_COMPLETION_TOKENS,
        "{body}"
    );

    let upstream = world.fake.last_request().unwrap();
    assert_eq!(upstream.path, "/v1/chat/completions");
    let sent = &upstream.body;
    assert_eq!(sent["model"], FAKE_UPSTREAM_MODEL, "{sent}");
    assert_eq!(sent["messages"][0]["role"], "system", "{sent}");
    assert_eq!(sent["messages"][0]["content"], "Be brief.", "{sent}");
    assert_eq!(sent["messages"][1]["role"], "user", "{sent}");
    assert_eq!(sent["temperature"], 0.5, "{sent}");
    assert_eq!(sent["stop"], json!(["END"]), "{sent}");
    let cap = sent["max_completion_tokens"]
        .as_u64()
        .or_else(|| sent["max_tokens"].as_u64());
    assert_eq!(cap, Some(100), "{sent}");

    let row = wait_for_usage(&world.stack.db, reply.request_id().unwrap()).await;
    assert_eq!(row.status, "ok", "{row:?}");
    assert_eq!(row.requested_model, model, "{row:?}");

    let stream = client
        .messages_stream(Some(world.key()), &streaming(request))
        .await
        .unwrap();
    stream.assert_event_order();
    assert_eq!(stream.text(), FAKE_CONTENT, "{}", stream.raw);
    let delta = stream.first("message_delta");
    assert_eq!(delta["delta"]["stop_reason"], "end_turn", "{delta}");
    assert_eq!(
        delta["usage"]["output_tokens"], FAKE_COMPLETION_TOKENS,
        "{delta}"
    );
    assert_eq!(world.fake.last_request().unwrap().body["stream"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_api_routes_to_a_gemini_provider() {
    let world = World::start(&[WireFormat::Gemini], &[]).await;
    let model = model_name(WireFormat::Gemini);
    let client = world.stack.client();
    let mut request = messages_body(&model, "Hi upstream", 100);
    request["system"] = json!([{"type": "text", "text": "Be brief."}]);

    let reply = client.messages(Some(world.key()), &request).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(assert_text_message(&reply.json(), &model), FAKE_CONTENT);
    let upstream = world.fake.last_request().unwrap();
    assert_eq!(
        upstream.path_only(),
        format!("/v1beta/models/{FAKE_GEMINI_MODEL}:generateContent")
    );
    assert!(
        upstream.contains("Be brief."),
        "the system prompt reached Gemini: {}",
        upstream.body
    );

    let stream: AnthropicStream = client
        .messages_stream(Some(world.key()), &streaming(request))
        .await
        .unwrap();
    stream.assert_event_order();
    assert_eq!(stream.text(), FAKE_CONTENT, "{}", stream.raw);
    assert_eq!(
        stream.first("message_delta")["usage"]["output_tokens"],
        FAKE_COMPLETION_TOKENS
    );
}

fn weather_tool() -> Value {
    json!([{
        "name": "get_weather",
        "description": "Current weather for a city",
        "input_schema": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["location"],
        },
    }])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_api_tool_use_round_trips_through_an_openai_provider() {
    let world = World::start(&[WireFormat::OpenAi], &[]).await;
    let model = model_name(WireFormat::OpenAi);
    let client = world.stack.client();
    let mut request = messages_body(&model, "What is the weather in Paris?", 200);
    request["tools"] = weather_tool();

    let reply = client.messages(Some(world.key()), &request).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["stop_reason"], "tool_use", "{body}");
    let tool_use = body["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|block| block["type"] == "tool_use")
        .unwrap_or_else(|| panic!("no tool_use block: {body}"))
        .clone();
    assert_eq!(tool_use["name"], "get_weather", "{body}");
    assert_eq!(tool_use["input"], expected_arguments(), "{body}");
    let tool_use_id = tool_use["id"].as_str().unwrap().to_owned();
    let sent = world.fake.last_request().unwrap().body;
    assert_eq!(sent["tools"][0]["type"], "function", "{sent}");
    assert_eq!(
        sent["tools"][0]["function"]["name"], "get_weather",
        "{sent}"
    );
    assert_eq!(
        sent["tools"][0]["function"]["parameters"],
        weather_tool()[0]["input_schema"],
        "{sent}"
    );

    let stream = client
        .messages_stream(Some(world.key()), &streaming(request.clone()))
        .await
        .unwrap();
    stream.assert_event_order();
    let block = stream.first("content_block_start");
    assert_eq!(block["content_block"]["type"], "tool_use", "{}", stream.raw);
    assert_eq!(
        block["content_block"]["name"], "get_weather",
        "{}",
        stream.raw
    );
    let input: Value = serde_json::from_str(&stream.tool_input_json())
        .unwrap_or_else(|error| panic!("{error}:\n{}", stream.raw));
    assert_eq!(input, expected_arguments(), "{}", stream.raw);
    assert_eq!(
        stream.first("message_delta")["delta"]["stop_reason"],
        "tool_use"
    );

    // The next turn carries the tool result; the upstream sees OpenAI's tool message.
    let mut follow_up = request;
    follow_up["messages"] = json!([
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [tool_use]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_use_id, "content": "18°C and sunny"}
        ]},
    ]);
    let reply = client
        .messages(Some(world.key()), &follow_up)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(assert_text_message(&reply.json(), &model), FAKE_CONTENT);
    let sent = world.fake.last_request().unwrap().body;
    let messages = sent["messages"].as_array().unwrap();
    let assistant = messages
        .iter()
        .find(|message| message["role"] == "assistant")
        .unwrap_or_else(|| panic!("{sent}"));
    assert_eq!(
        assistant["tool_calls"][0]["id"], tool_use_id,
        "the assistant's tool call is replayed: {sent}"
    );
    let result = messages.last().unwrap();
    assert_eq!(result["role"], "tool", "{sent}");
    assert_eq!(result["tool_call_id"], tool_use_id, "{sent}");
    assert!(result.to_string().contains("18°C and sunny"), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_api_errors_come_in_anthropics_shape() {
    let world = World::start(&[WireFormat::OpenAi], &[]).await;
    let model = model_name(WireFormat::OpenAi);
    let client = world.stack.client();
    let request = messages_body(&model, "hi", 16);

    let missing = client.messages(None, &request).await.unwrap();
    assert_anthropic_error(&missing, 401, "authentication_error");
    let wrong = client
        .messages(Some("tg_not_a_key"), &request)
        .await
        .unwrap();
    assert_anthropic_error(&wrong, 401, "authentication_error");
    let unknown = client
        .messages(Some(world.key()), &messages_body("no-such-model", "hi", 16))
        .await
        .unwrap();
    assert_anthropic_error(&unknown, 404, "not_found_error");
    let mut no_max_tokens = request.clone();
    no_max_tokens.as_object_mut().unwrap().remove("max_tokens");
    let invalid = client
        .messages(Some(world.key()), &no_max_tokens)
        .await
        .unwrap();
    assert_anthropic_error(&invalid, 400, "invalid_request_error");

    world.fake.set_behavior(Behavior::RateLimited {
        retry_after_secs: 9,
    });
    let limited = client.messages(Some(world.key()), &request).await.unwrap();
    assert_anthropic_error(&limited, 429, "rate_limit_error");
    assert_eq!(limited.header("retry-after"), Some("9"));
}
