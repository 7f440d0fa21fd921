//! Golden tests, OpenAI chat/embeddings API → OpenAI upstream: one snapshot per case in
//! `snapshots/openai__<case>.snap`, replies from `fixtures/`. Beyond the snapshots, each test
//! asserts the property its case exists for, so a careless snapshot update cannot hide a
//! regression.

#![allow(clippy::unwrap_used)]

use super::OpenAiProvider;
use super::golden_cases as cases;
use crate::providers::Provider;
use crate::providers::golden::{self, GoldenRecord, UpstreamReply, golden_snapshot};
use crate::providers::secret::ApiKey;
use serde_json::Value;

const KEY: &str = "sk-golden-0123456789abcdef";

fn adapter(base_url: &str) -> Box<dyn Provider> {
    Box::new(OpenAiProvider::new(
        "openai".to_owned(),
        &format!("{base_url}/v1"),
        ApiKey::new(KEY.to_owned()),
    ))
}

fn fixture(name: &str) -> String {
    golden::fixture(&format!("src/providers/openai/fixtures/{name}"))
}

fn json_reply(name: &str) -> UpstreamReply {
    UpstreamReply::json(&fixture(name))
}

fn sse_reply(name: &str) -> UpstreamReply {
    UpstreamReply::sse(&fixture(name))
}

fn error_reply(status: u16, name: &str) -> UpstreamReply {
    UpstreamReply::error(status, &fixture(name))
}

async fn chat(case: &str, request: Value, reply: UpstreamReply) -> GoldenRecord {
    let record = golden::chat(adapter, "gpt-4o-mini", request, reply).await;
    snapshot(case, &record);
    let upstream = record.upstream_request.as_ref().unwrap();
    assert_eq!(upstream.path_and_query, "/v1/chat/completions");
    assert_eq!(upstream.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(upstream.body["model"], "gpt-4o-mini");
    record
}

fn snapshot(case: &str, record: &GoldenRecord) {
    golden_snapshot!(format!("openai__{case}"), record);
}

#[tokio::test]
async fn text_passes_through() {
    let record = chat("text", cases::text(), json_reply("text.json")).await;
    let upstream = record.upstream_request.as_ref().unwrap();
    assert!(upstream.body.get("stream").is_none());
    assert_eq!(
        record.response()["choices"][0]["message"]["content"],
        "Hello! How can I help you today?"
    );
}

#[tokio::test]
async fn multi_turn_keeps_every_message_in_order() {
    let record = chat(
        "multi_turn",
        cases::multi_turn(),
        json_reply("multi_turn.json"),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(body["messages"], cases::multi_turn()["messages"]);
}

#[tokio::test]
async fn system_prompt_and_sampling_parameters_pass_through() {
    let record = chat(
        "system_prompt",
        cases::system_prompt(),
        json_reply("system_prompt.json"),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["temperature"], 0.7);
    assert_eq!(body["max_tokens"], 50);
}

#[tokio::test]
async fn tool_call_comes_back_with_its_arguments() {
    let record = chat(
        "tool_call",
        cases::tool_call(),
        json_reply("tool_call.json"),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(body["tools"], cases::tool_call()["tools"]);
    let choice = &record.response()["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
}

#[tokio::test]
async fn tool_results_reach_the_upstream_with_their_call_ids() {
    let record = chat(
        "tool_result",
        cases::tool_result(),
        json_reply("tool_result.json"),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    // `content: null` beside tool calls is dropped: OpenAI treats absent and null alike there.
    let mut sent = cases::tool_result()["messages"].clone();
    sent[1].as_object_mut().unwrap().remove("content");
    assert_eq!(body["messages"], sent);
}

#[tokio::test]
async fn streamed_tool_call_deltas_all_arrive_in_order() {
    let record = chat(
        "tool_call_streaming",
        cases::tool_call_streaming(),
        sse_reply("tool_call_stream.sse"),
    )
    .await;
    let (chunks, error) = record.stream();
    assert!(error.is_none());
    let mut arguments = [String::new(), String::new()];
    for chunk in chunks {
        for call in chunk["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap() as usize;
            arguments[index].push_str(call["function"]["arguments"].as_str().unwrap());
        }
    }
    assert_eq!(
        arguments,
        [
            r#"{"location":"Paris, France"}"#,
            r#"{"tz":"Europe/Paris"}"#
        ]
    );
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 41);
}

#[tokio::test]
async fn json_mode_passes_response_format() {
    let record = chat(
        "json_mode",
        cases::json_mode(),
        json_reply("json_mode.json"),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(
        body["response_format"],
        cases::json_mode()["response_format"]
    );
}

#[tokio::test]
async fn json_schema_passes_the_schema() {
    let record = chat(
        "json_schema",
        cases::json_schema(),
        json_reply("json_schema.json"),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(
        body["response_format"],
        cases::json_schema()["response_format"]
    );
}

#[tokio::test]
async fn image_parts_pass_through() {
    let record = chat(
        "image_input",
        cases::image_input(),
        json_reply("image_input.json"),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(body["messages"], cases::image_input()["messages"]);
    assert_eq!(body["max_completion_tokens"], 300);
}

#[tokio::test]
async fn upstream_400_is_the_clients_400_with_the_upstream_message() {
    let record = chat(
        "error_400",
        cases::invalid_temperature(),
        error_reply(400, "error_400.json"),
    )
    .await;
    let (status, body) = record.error();
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "upstream_invalid_request");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Invalid 'temperature'"), "{message}");
}

#[tokio::test]
async fn upstream_401_never_repeats_the_upstream_body_or_the_key() {
    let record = chat(
        "error_401",
        cases::text(),
        error_reply(401, "error_401.json"),
    )
    .await;
    let (status, body) = record.error();
    assert_eq!(status, 502);
    let text = body.to_string();
    assert!(
        !text.contains(KEY) && !text.contains("Incorrect API key"),
        "{text}"
    );
}

#[tokio::test]
async fn upstream_429_is_the_clients_429() {
    let mut reply = error_reply(429, "error_429.json");
    reply.headers.push(("retry-after", "20"));
    let record = chat("error_429", cases::text(), reply).await;
    let (status, body) = record.error();
    assert_eq!(status, 429);
    assert_eq!(body["error"]["code"], "upstream_rate_limited");
}

#[tokio::test]
async fn upstream_500_is_a_502() {
    let record = chat(
        "error_500",
        cases::text(),
        error_reply(500, "error_500.json"),
    )
    .await;
    let (status, body) = record.error();
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "upstream_error");
}

#[tokio::test]
async fn streams_always_ask_the_upstream_for_usage() {
    let record = chat(
        "text_stream",
        cases::text_stream(),
        sse_reply("text_stream.sse"),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    let (chunks, error) = record.stream();
    assert!(error.is_none());
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks.last().unwrap()["choices"], serde_json::json!([]));
}

#[tokio::test]
async fn stream_usage_keeps_cached_prompt_tokens() {
    let record = chat(
        "usage_in_stream",
        cases::usage_in_stream(),
        sse_reply("usage_stream.sse"),
    )
    .await;
    let (chunks, _) = record.stream();
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 2006);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 1920);
}

#[tokio::test]
async fn a_stream_closed_before_done_ends_with_an_error_after_its_chunks() {
    let record = chat(
        "stream_cut",
        cases::text_stream(),
        sse_reply("stream_cut.sse"),
    )
    .await;
    let (chunks, error) = record.stream();
    assert_eq!(chunks.len(), 4);
    let error = error.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("before [DONE]"),
        "{error}"
    );
}

#[tokio::test]
async fn a_malformed_chunk_ends_the_stream_with_an_error() {
    let record = chat(
        "malformed_json",
        cases::text_stream(),
        sse_reply("malformed_chunk.sse"),
    )
    .await;
    let (chunks, error) = record.stream();
    assert_eq!(chunks.len(), 2);
    assert_eq!(error.unwrap()["error"]["code"], "upstream_error");
}

#[tokio::test]
async fn unknown_fields_pass_through_both_ways() {
    let record = chat(
        "unknown_fields",
        cases::unknown_fields(),
        json_reply("unknown_fields.json"),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    for field in [
        "reasoning_effort",
        "metadata",
        "store",
        "seed",
        "user",
        "logit_bias",
        "x_vendor_option",
    ] {
        assert_eq!(body[field], cases::unknown_fields()[field], "{field}");
    }
    let response = record.response();
    assert_eq!(response["x_upstream_trace"]["queue_ms"], 12);
    assert_eq!(response["service_tier"], "default");
}

#[tokio::test]
async fn embeddings_ask_the_upstream_for_floats() {
    let record = golden::embeddings(
        adapter,
        "text-embedding-3-small",
        cases::embeddings(),
        json_reply("embeddings.json"),
    )
    .await;
    snapshot("embeddings", &record);
    let upstream = record.upstream_request.as_ref().unwrap();
    assert_eq!(upstream.path_and_query, "/v1/embeddings");
    assert_eq!(upstream.body["encoding_format"], "float");
    assert_eq!(upstream.body["model"], "text-embedding-3-small");
    assert_eq!(upstream.body["dimensions"], 8);
    let response = record.response();
    assert_eq!(response["data"].as_array().unwrap().len(), 2);
    assert_eq!(response["usage"]["prompt_tokens"], 11);
}
