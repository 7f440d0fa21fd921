//! Unit tests for the request rules (every refusal names its parameter; defaults pass) and the
//! stream translator's edge cases. Whole exchanges are in `golden`.

#![allow(clippy::unwrap_used)]

use super::request::translate;
use super::stream::AnthropicChunks;
use super::{AnthropicProvider, DEFAULT_MAX_TOKENS, JSON_TOOL_NAME};
use crate::api::chat::{ChatCompletionChunk, ChatCompletionRequest};
use crate::providers::secret::ApiKey;
use crate::providers::sse::SseEvent;
use crate::providers::transport::{Flow, StreamTranslator};
use crate::providers::{Provider, ProviderError};
use serde_json::{Value, json};

fn request(extra: Value) -> ChatCompletionRequest {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    ChatCompletionRequest::parse(body.to_string().as_bytes()).unwrap()
}

/// The upstream body, or the parameter a refusal names.
fn body(extra: Value) -> Result<Value, String> {
    let request = request(extra);
    match translate("claude-x", &request, false) {
        Ok(translated) => {
            let mut body = serde_json::to_value(&translated.body).unwrap();
            body["json_mode"] = json!(translated.json_mode);
            Ok(body)
        }
        Err(ProviderError::Unsupported {
            provider_kind,
            param,
            ..
        }) => {
            assert_eq!(provider_kind, "anthropic");
            Err(param)
        }
        Err(other) => panic!("unexpected {other:?}"),
    }
}

fn refused(extra: Value) -> String {
    body(extra.clone()).expect_err(&format!("{extra} should be refused"))
}

#[test]
fn parameters_anthropic_cannot_carry_are_refused_by_name() {
    for (extra, param) in [
        (json!({"n": 2}), "n"),
        (json!({"seed": 42}), "seed"),
        (json!({"logprobs": true}), "logprobs"),
        (json!({"top_logprobs": 3}), "top_logprobs"),
        (json!({"frequency_penalty": 0.5}), "frequency_penalty"),
        (json!({"presence_penalty": -1}), "presence_penalty"),
        (json!({"logit_bias": {"50256": -100}}), "logit_bias"),
        (
            json!({"audio": {"voice": "alloy", "format": "wav"}}),
            "audio",
        ),
        (json!({"modalities": ["text", "audio"]}), "modalities"),
        (json!({"store": true}), "store"),
        (json!({"metadata": {"k": "v"}}), "metadata"),
        (json!({"service_tier": "flex"}), "service_tier"),
        (json!({"reasoning_effort": "high"}), "reasoning_effort"),
        (
            json!({"prediction": {"type": "content", "content": "x"}}),
            "prediction",
        ),
        (json!({"web_search_options": {}}), "web_search_options"),
        (json!({"verbosity": "low"}), "verbosity"),
        (json!({"prompt_cache_key": "k"}), "prompt_cache_key"),
        (json!({"functions": [{"name": "f"}]}), "functions"),
        (json!({"function_call": "auto"}), "function_call"),
        (json!({"top_k": 5}), "top_k"),
        (json!({"temperature": 1.5}), "temperature"),
        (json!({"temperature": "hot"}), "temperature"),
        (json!({"top_p": "high"}), "top_p"),
        (json!({"stop": 7}), "stop"),
        (json!({"stop": ["a", 1]}), "stop"),
        (json!({"user": 42}), "user"),
        (json!({"tools": {}}), "tools"),
        (json!({"parallel_tool_calls": "no"}), "parallel_tool_calls"),
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format.type",
        ),
        (
            json!({"response_format": {"type": "json_schema"}}),
            "response_format.json_schema",
        ),
    ] {
        assert_eq!(refused(extra.clone()), param, "{extra}");
    }
}

#[test]
fn openai_defaults_are_accepted_and_dropped() {
    let translated = body(json!({
        "n": 1,
        "frequency_penalty": 0,
        "presence_penalty": 0.0,
        "logprobs": false,
        "store": false,
        "logit_bias": {},
        "modalities": ["text"],
        "service_tier": "auto",
        "parallel_tool_calls": true,
        "stream_options": {"include_usage": true},
        "seed": null,
        "top_logprobs": null,
        "response_format": {"type": "text"},
        "tool_choice": "auto"
    }))
    .unwrap();
    assert_eq!(
        translated,
        json!({
            "model": "claude-x",
            "max_tokens": DEFAULT_MAX_TOKENS,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            "json_mode": false
        })
    );
}

#[test]
fn sampling_limits_and_attribution_are_translated() {
    let translated = body(json!({
        "temperature": 1,
        "top_p": 0.5,
        "stop": ["x", "y"],
        "max_tokens": 10,
        "max_completion_tokens": 20,
        "safety_identifier": "hashed",
        "user": "u-1"
    }))
    .unwrap();
    assert_eq!(translated["temperature"], 1);
    assert_eq!(translated["top_p"], 0.5);
    assert_eq!(translated["stop_sequences"], json!(["x", "y"]));
    assert_eq!(translated["max_tokens"], 20);
    assert_eq!(translated["metadata"], json!({"user_id": "u-1"}));
    let translated = body(json!({"safety_identifier": "hashed", "max_tokens": 10})).unwrap();
    assert_eq!(translated["metadata"], json!({"user_id": "hashed"}));
    assert_eq!(translated["max_tokens"], 10);
}

#[test]
fn message_shapes_anthropic_cannot_carry_are_refused_by_path() {
    let tool_call = |arguments: &str| {
        json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": arguments}}
            ]}
        ])
    };
    for (messages, param) in [
        (
            tool_call("{not json"),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            tool_call("[1, 2]"),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            json!([{"role": "user", "content": "hi", "name": "ada"}]),
            "messages[0].name",
        ),
        (
            json!([{"role": "function", "name": "f", "content": "x"}]),
            "messages[0].role",
        ),
        (
            json!([{"role": "user", "content": [
                {"type": "text", "text": "listen"},
                {"type": "input_audio", "input_audio": {"data": "AAA=", "format": "wav"}}
            ]}]),
            "messages[0].content[1].type",
        ),
        (
            json!([{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}
            ]}]),
            "messages[0].content[0].image_url.url",
        ),
        (
            json!([{"role": "system", "content": [
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
            ]}]),
            "messages[0].content[0].type",
        ),
        (
            json!([{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}]),
            "messages[1].tool_call_id",
        ),
        (
            json!([{"role": "assistant", "tool_calls": [{"id": "t", "type": "custom"}]}]),
            "messages[0].tool_calls[0].type",
        ),
    ] {
        assert_eq!(refused(json!({"messages": messages})), param, "{messages}");
    }
}

#[test]
fn tools_and_tool_choice_are_translated() {
    let tools = json!([{"type": "function", "function": {"name": "f", "strict": true}}]);
    let translated = body(json!({"tools": tools, "parallel_tool_calls": false})).unwrap();
    assert_eq!(
        translated["tools"],
        json!([{"name": "f", "input_schema": {"type": "object"}}])
    );
    assert_eq!(
        translated["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    for (choice, expected) in [
        (json!("auto"), json!({"type": "auto"})),
        (json!("required"), json!({"type": "any"})),
        (json!("none"), json!({"type": "none"})),
        (
            json!({"type": "function", "function": {"name": "f"}}),
            json!({"type": "tool", "name": "f"}),
        ),
    ] {
        let translated = body(json!({"tools": tools, "tool_choice": choice})).unwrap();
        assert_eq!(translated["tool_choice"], expected, "{choice}");
    }
    assert_eq!(
        refused(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]})),
        "tools[0].type"
    );
    assert_eq!(refused(json!({"tool_choice": "required"})), "tool_choice");
    assert_eq!(
        refused(json!({"tools": tools, "tool_choice": "sometimes"})),
        "tool_choice"
    );
    // "none" without tools means nothing: no tool_choice goes upstream.
    let translated = body(json!({"tool_choice": "none"})).unwrap();
    assert!(translated.get("tool_choice").is_none());
}

#[test]
fn json_object_mode_forces_a_generic_tool() {
    let translated = body(json!({"response_format": {"type": "json_object"}})).unwrap();
    assert_eq!(translated["json_mode"], true);
    assert_eq!(translated["tools"][0]["name"], JSON_TOOL_NAME);
    assert_eq!(
        translated["tools"][0]["input_schema"],
        json!({"type": "object"})
    );
    assert_eq!(
        translated["tool_choice"],
        json!({"type": "tool", "name": JSON_TOOL_NAME})
    );
}

#[test]
fn json_mode_cannot_be_combined_with_the_clients_tools() {
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    let json_object = json!({"type": "json_object"});
    assert_eq!(
        refused(json!({"tools": tools, "response_format": json_object})),
        "response_format"
    );
    assert_eq!(
        refused(json!({"tool_choice": "auto", "response_format": json_object})),
        "tool_choice"
    );
}

// --- stream translator ------------------------------------------------------------------

fn event(name: Option<&str>, data: Value) -> SseEvent {
    SseEvent {
        event: name.map(str::to_owned),
        data: data.to_string(),
    }
}

fn start() -> SseEvent {
    event(
        Some("message_start"),
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude-x", "content": [],
            "usage": {"input_tokens": 3, "output_tokens": 1}}}),
    )
}

fn feed(translator: &mut AnthropicChunks, event: &SseEvent) -> Result<Vec<Value>, String> {
    let mut out: Vec<ChatCompletionChunk> = Vec::new();
    translator.on_event(event, &mut out)?;
    Ok(out
        .into_iter()
        .map(|chunk| serde_json::to_value(chunk).unwrap())
        .collect())
}

#[test]
fn thinking_is_skipped_and_text_after_it_streams() {
    let mut translator = AnthropicChunks::starting_at(false, 0);
    feed(&mut translator, &start()).unwrap();
    let thinking_start = event(
        Some("content_block_start"),
        json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "thinking", "thinking": ""}}),
    );
    assert!(feed(&mut translator, &thinking_start).unwrap().is_empty());
    for delta in [
        json!({"type": "thinking_delta", "thinking": "Let me think"}),
        json!({"type": "signature_delta", "signature": "EqQB"}),
    ] {
        let delta = event(
            Some("content_block_delta"),
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        );
        assert!(feed(&mut translator, &delta).unwrap().is_empty());
    }
    let text_start = event(
        Some("content_block_start"),
        json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "text", "text": ""}}),
    );
    feed(&mut translator, &text_start).unwrap();
    // No SSE event name: the data's type decides.
    let text = event(
        None,
        json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "text_delta", "text": "42"}}),
    );
    let chunks = feed(&mut translator, &text).unwrap();
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"content": "42"}));
    assert_eq!(chunks[0]["id"], "msg_1");
}

#[test]
fn protocol_violations_end_the_stream() {
    let delta = event(
        Some("content_block_delta"),
        json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": "x"}}),
    );
    let mut translator = AnthropicChunks::starting_at(false, 0);
    assert!(
        feed(&mut translator, &delta)
            .unwrap_err()
            .contains("before message_start")
    );
    feed(&mut translator, &start()).unwrap();
    assert!(
        feed(&mut translator, &delta)
            .unwrap_err()
            .contains("content block 0")
    );
    let far = event(
        Some("content_block_start"),
        json!({"type": "content_block_start", "index": 1_000_000_000_u64,
            "content_block": {"type": "text", "text": ""}}),
    );
    assert!(
        feed(&mut translator, &far)
            .unwrap_err()
            .contains("out of range")
    );
    let garbage = SseEvent {
        event: Some("content_block_start".to_owned()),
        data: "{not json".to_owned(),
    };
    assert!(feed(&mut translator, &garbage).is_err());
    assert!(translator.on_close(&mut Vec::new()).is_err());
}

#[test]
fn pings_and_unknown_events_are_ignored_and_message_stop_ends_the_stream() {
    let mut translator = AnthropicChunks::starting_at(false, 0);
    feed(&mut translator, &start()).unwrap();
    for ignored in [
        event(Some("ping"), json!({"type": "ping"})),
        event(Some("future_event"), json!({"type": "future_event"})),
    ] {
        assert!(feed(&mut translator, &ignored).unwrap().is_empty());
    }
    let mut out = Vec::new();
    let stop = event(Some("message_stop"), json!({"type": "message_stop"}));
    assert_eq!(translator.on_event(&stop, &mut out), Ok(Flow::Done));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].choices[0].finish_reason.as_deref(), Some("stop"));
    assert!(out[1].is_usage_only());
}

// --- transport ------------------------------------------------------------------------

#[tokio::test]
async fn a_429_passes_retry_after_on() {
    use axum::http::StatusCode;
    let app = axum::Router::new().fallback(|| async {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "17")],
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let provider = AnthropicProvider::new(
        "anthropic-main".to_owned(),
        &base_url,
        "",
        ApiKey::new("k".to_owned()),
    );
    let target = crate::providers::test_target("claude", "claude-x");
    let err = provider
        .chat(&target, &request(json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ProviderError::UpstreamStatus { status: 429, retry_after_secs: Some(17), message, .. }
                if message == "slow down"
        ),
        "{err:?}"
    );
}
