//! Golden tests, OpenAI chat/embeddings API → Azure OpenAI upstream: one snapshot per case in
//! `snapshots/azure_openai__<case>.snap`. Azure speaks OpenAI's bodies, so what differs is
//! the address (deployment in the path, `api-version` in the query), the `api-key` header (and
//! no `Authorization`), Azure's own error bodies and its content-filter annotations in streams:
//! those replies are Azure fixtures (`fixtures/`); the rest reuse the OpenAI fixtures.

#![allow(clippy::unwrap_used)]

use super::AzureOpenAiProvider;
use crate::providers::Provider;
use crate::providers::golden::{self, GoldenRecord, UpstreamReply, golden_snapshot};
use crate::providers::openai::golden_cases as cases;
use crate::providers::secret::ApiKey;
use serde_json::Value;

const KEY: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const DEPLOYMENT: &str = "gpt4o-prod";
const API_VERSION: &str = "2024-10-21";

fn adapter(base_url: &str) -> Box<dyn Provider> {
    Box::new(AzureOpenAiProvider::new(
        "azure".to_owned(),
        base_url,
        API_VERSION,
        ApiKey::new(KEY.to_owned()),
    ))
}

fn azure(name: &str) -> String {
    golden::fixture(&format!("src/providers/azure_openai/fixtures/{name}"))
}

fn openai(name: &str) -> String {
    golden::fixture(&format!("src/providers/openai/fixtures/{name}"))
}

async fn chat(case: &str, request: Value, reply: UpstreamReply) -> GoldenRecord {
    let record = golden::chat(adapter, DEPLOYMENT, request, reply).await;
    snapshot(case, &record);
    let upstream = record.upstream_request.as_ref().unwrap();
    assert_eq!(
        upstream.path_and_query,
        format!("/openai/deployments/{DEPLOYMENT}/chat/completions?api-version={API_VERSION}")
    );
    assert_eq!(upstream.headers["api-key"], KEY);
    assert!(!upstream.headers.contains_key("authorization"));
    record
}

fn snapshot(case: &str, record: &GoldenRecord) {
    golden_snapshot!(format!("azure_openai__{case}"), record);
}

/// Every chunk of a stream carries the stream's id: no Azure annotation leaks through.
fn assert_one_identity(chunks: &[Value]) {
    let id = &chunks[0]["id"];
    assert!(id.as_str().is_some_and(|id| id.starts_with("chatcmpl-")));
    for chunk in chunks {
        assert_eq!(&chunk["id"], id, "{chunk}");
        assert_eq!(chunk["model"], chunks[0]["model"], "{chunk}");
    }
}

#[tokio::test]
async fn text_goes_to_the_deployment_with_the_api_key_header() {
    let record = chat(
        "text",
        cases::text(),
        UpstreamReply::json(&azure("text.json")),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(body["model"], DEPLOYMENT);
    let response = record.response();
    assert_eq!(
        response["choices"][0]["message"]["content"],
        "Hello! How can I help you today?"
    );
    // Azure's filter results are kept for clients that read them.
    assert!(response["prompt_filter_results"].is_array());
}

#[tokio::test]
async fn multi_turn_keeps_every_message_in_order() {
    let record = chat(
        "multi_turn",
        cases::multi_turn(),
        UpstreamReply::json(&openai("multi_turn.json")),
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
        UpstreamReply::json(&openai("system_prompt.json")),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["temperature"], 0.7);
}

#[tokio::test]
async fn tool_call_comes_back_with_its_arguments() {
    let record = chat(
        "tool_call",
        cases::tool_call(),
        UpstreamReply::json(&openai("tool_call.json")),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(body["tools"], cases::tool_call()["tools"]);
    assert_eq!(
        record.response()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn streamed_tool_call_deltas_arrive_without_the_prompt_filter_event() {
    let record = chat(
        "tool_call_streaming",
        cases::tool_call_streaming(),
        UpstreamReply::sse(&azure("tool_call_stream.sse")),
    )
    .await;
    let (chunks, error) = record.stream();
    assert!(error.is_none());
    assert_one_identity(chunks);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let arguments: String = chunks
        .iter()
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        })
        .collect();
    assert_eq!(arguments, r#"{"location":"Paris, France"}"#);
}

#[tokio::test]
async fn json_mode_passes_response_format() {
    let record = chat(
        "json_mode",
        cases::json_mode(),
        UpstreamReply::json(&openai("json_mode.json")),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(
        body["response_format"],
        cases::json_mode()["response_format"]
    );
}

#[tokio::test]
async fn image_parts_pass_through() {
    let record = chat(
        "image_input",
        cases::image_input(),
        UpstreamReply::json(&openai("image_input.json")),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(body["messages"], cases::image_input()["messages"]);
}

#[tokio::test]
async fn a_prompt_blocked_by_the_content_filter_is_the_clients_400() {
    let record = chat(
        "error_400_content_filter",
        cases::text(),
        UpstreamReply::error(400, &azure("error_400_content_filter.json")),
    )
    .await;
    let (status, body) = record.error();
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("content management policy"), "{message}");
}

#[tokio::test]
async fn upstream_401_never_repeats_the_upstream_body_or_the_key() {
    let record = chat(
        "error_401",
        cases::text(),
        UpstreamReply::error(401, &azure("error_401.json")),
    )
    .await;
    let (status, body) = record.error();
    assert_eq!(status, 502);
    let text = body.to_string();
    assert!(
        !text.contains(KEY) && !text.contains("subscription key"),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_deployment_is_a_502_naming_it() {
    let record = chat(
        "error_404_deployment",
        cases::text(),
        UpstreamReply::error(404, &azure("error_404_deployment.json")),
    )
    .await;
    let (status, body) = record.error();
    assert_eq!(status, 502);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("deployment"), "{message}");
}

#[tokio::test]
async fn upstream_429_is_the_clients_429() {
    let mut reply = UpstreamReply::error(429, &azure("error_429.json"));
    reply.headers.push(("retry-after", "6"));
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
        UpstreamReply::error(500, &azure("error_500.json")),
    )
    .await;
    assert_eq!(record.error().0, 502);
}

#[tokio::test]
async fn stream_usage_keeps_cached_prompt_tokens_and_drops_the_prompt_filter_event() {
    let record = chat(
        "usage_in_stream",
        cases::usage_in_stream(),
        UpstreamReply::sse(&azure("usage_stream.sse")),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(body["stream_options"]["include_usage"], true);
    let (chunks, error) = record.stream();
    assert!(error.is_none());
    assert_one_identity(chunks);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 1290);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 1152);
}

#[tokio::test]
async fn asynchronous_filtering_ends_the_choice_with_content_filter() {
    let record = chat(
        "async_content_filter",
        cases::text_stream(),
        UpstreamReply::sse(&azure("async_filter_stream.sse")),
    )
    .await;
    let (chunks, error) = record.stream();
    assert!(error.is_none());
    assert_one_identity(chunks);
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|chunk| chunk["choices"][0]["finish_reason"].as_str().map(|_| chunk))
        .collect();
    assert_eq!(finishes.len(), 1);
    assert_eq!(finishes[0]["choices"][0]["finish_reason"], "content_filter");
    assert!(chunks.last().unwrap()["usage"].is_object());
}

#[tokio::test]
async fn a_stream_closed_before_done_ends_with_an_error_after_its_chunks() {
    let record = chat(
        "stream_cut",
        cases::text_stream(),
        UpstreamReply::sse(&openai("stream_cut.sse")),
    )
    .await;
    let (chunks, error) = record.stream();
    assert_eq!(chunks.len(), 4);
    assert!(error.is_some());
}

#[tokio::test]
async fn a_malformed_chunk_ends_the_stream_with_an_error() {
    let record = chat(
        "malformed_json",
        cases::text_stream(),
        UpstreamReply::sse(&openai("malformed_chunk.sse")),
    )
    .await;
    let (chunks, error) = record.stream();
    assert_eq!(chunks.len(), 2);
    assert_eq!(error.unwrap()["error"]["code"], "upstream_error");
}

#[tokio::test]
async fn unknown_fields_pass_through() {
    let record = chat(
        "unknown_fields",
        cases::unknown_fields(),
        UpstreamReply::json(&openai("unknown_fields.json")),
    )
    .await;
    let body = &record.upstream_request.as_ref().unwrap().body;
    assert_eq!(
        body["x_vendor_option"],
        cases::unknown_fields()["x_vendor_option"]
    );
    assert_eq!(body["metadata"], cases::unknown_fields()["metadata"]);
}

#[tokio::test]
async fn embeddings_go_to_the_embedding_deployment_as_floats() {
    let record = golden::embeddings(
        adapter,
        "embed-small",
        cases::embeddings(),
        UpstreamReply::json(&azure("embeddings.json")),
    )
    .await;
    snapshot("embeddings", &record);
    let upstream = record.upstream_request.as_ref().unwrap();
    assert_eq!(
        upstream.path_and_query,
        format!("/openai/deployments/embed-small/embeddings?api-version={API_VERSION}")
    );
    assert_eq!(upstream.headers["api-key"], KEY);
    assert!(!upstream.headers.contains_key("authorization"));
    assert_eq!(upstream.body["encoding_format"], "float");
    assert_eq!(record.response()["usage"]["prompt_tokens"], 5);
}
