#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `tollgate-edge serve --config file.toml`: an edge with no control plane, configured from a
//! file (providers, models, keys).

use std::path::PathBuf;

use tempfile::TempDir;
use tollgate_e2e::{
    Edge, FAKE_CONTENT, FAKE_UPSTREAM_MODEL, FakeProvider, assert_chat_completion,
    assert_chat_stream, chat_body,
};

const FULL_KEY: &str = "tg_local_e2e_full_access_key";
const MOCK_ONLY_KEY: &str = "tg_local_e2e_mock_only_key";
const FILE_API_KEY: &str = "sk-file-secret-456";

/// Writes a config with the mock provider (model `mock-small`), the fake as an OpenAI provider
/// (model `file-gpt`), a key for every model and a key for `mock-small` only.
fn write_config(dir: &TempDir, fake: &FakeProvider) -> PathBuf {
    let config = format!(
        r#"
[[providers]]
name = "mock"
kind = "mock"
[providers.mock]
latency_ms = 0
output_tokens = 16
chunk_interval_ms = 0

[[providers]]
name = "fake"
kind = "openai"
base_url = "{base_url}"
api_key = "{FILE_API_KEY}"
request_timeout_ms = 5000

[[models]]
name = "mock-small"
provider = "mock"
input_price_micros_per_mtok = 100_000
output_price_micros_per_mtok = 400_000

[[models]]
name = "file-gpt"
provider = "fake"
upstream_model = "{FAKE_UPSTREAM_MODEL}"
input_price_micros_per_mtok = 150_000
output_price_micros_per_mtok = 600_000

[[keys]]
key = "{FULL_KEY}"
org = "local"
team = "local"
project = "local"

[[keys]]
key = "{MOCK_ONLY_KEY}"
org = "local"
team = "local"
project = "local"
allowed_models = ["mock-small"]
"#,
        base_url = fake.base_url(),
    );
    let path = dir.path().join("tollgate-edge.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_edge_serves_mock_chat_and_rejects_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeProvider::start().await;
    let config = write_config(&dir, &fake);
    let mut edge = Edge::start_with_config(&config, &[]).await;
    edge.wait_ready().await;
    let client = edge.client();

    let reply = client
        .chat(Some(FULL_KEY), &chat_body("mock-small", "hi"))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let usage = assert_chat_completion(&reply.json(), Some("mock-small"));
    assert_eq!(
        usage.completion_tokens, 16,
        "output_tokens = 16 in the file"
    );

    let mut stream_request = chat_body("mock-small", "hi");
    stream_request["stream"] = serde_json::json!(true);
    stream_request["stream_options"] = serde_json::json!({"include_usage": true});
    let stream = client
        .chat_stream(Some(FULL_KEY), &stream_request)
        .await
        .unwrap();
    assert_chat_stream(&stream, Some("mock-small"), true);

    let unknown = client
        .chat(Some("tg_not_in_the_file"), &chat_body("mock-small", "hi"))
        .await
        .unwrap();
    unknown.assert_openai_error(401, "invalid_request_error", "invalid_api_key", None);

    let not_allowed = client
        .chat(Some(MOCK_ONLY_KEY), &chat_body("file-gpt", "hi"))
        .await
        .unwrap();
    not_allowed.assert_openai_error(403, "permission_error", "model_not_allowed", Some("model"));
    assert_eq!(
        client.model_ids(MOCK_ONLY_KEY).await.unwrap(),
        vec!["mock-small".to_owned()]
    );
    assert_eq!(
        client.model_ids(FULL_KEY).await.unwrap(),
        vec!["file-gpt".to_owned(), "mock-small".to_owned()]
    );
    assert_eq!(
        fake.request_count(),
        0,
        "nothing above should reach the openai provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_edge_calls_openai_provider_with_key_from_file() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeProvider::start().await;
    let config = write_config(&dir, &fake);
    let mut edge = Edge::start_with_config(&config, &[]).await;
    edge.wait_ready().await;

    let reply = edge
        .client()
        .chat(Some(FULL_KEY), &chat_body("file-gpt", "hi from a file"))
        .await
        .unwrap();

    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_chat_completion(&body, None);
    assert_eq!(
        body["choices"][0]["message"]["content"], FAKE_CONTENT,
        "{body}"
    );
    let upstream = fake.last_request().unwrap();
    assert_eq!(
        upstream.body["model"], FAKE_UPSTREAM_MODEL,
        "{}",
        upstream.body
    );
    let expected_authorization = format!("Bearer {FILE_API_KEY}");
    assert_eq!(
        upstream.header("authorization"),
        Some(expected_authorization.as_str())
    );
    assert!(
        !upstream.contains(FULL_KEY),
        "the virtual key must not be forwarded upstream"
    );
    assert!(
        !reply.body.contains(FILE_API_KEY),
        "provider key leaked to the client"
    );
}
