//! `POST /v1/embeddings` on the edge, and reading OpenAI embeddings responses (float arrays
//! and the base64 strings the openai SDKs ask for by default).

use base64::Engine as _;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::gateway_client::{GatewayClient, HttpReply, buffer};

/// An embeddings request body.
pub fn embeddings_body(model: &str, input: Value) -> Value {
    json!({"model": model, "input": input})
}

impl GatewayClient {
    /// POST /v1/embeddings with a bearer key, buffered.
    pub async fn embeddings(&self, key: Option<&str>, body: &Value) -> anyhow::Result<HttpReply> {
        let mut request = self
            .http
            .post(self.url("/v1/embeddings"))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        buffer(request.send().await?).await
    }
}

/// The vectors of an OpenAI embeddings response, in `index` order, decoding base64 entries
/// (little-endian f32). Panics with the body on anything malformed.
#[track_caller]
pub fn embedding_vectors(body: &Value) -> Vec<Vec<f32>> {
    assert_eq!(body["object"], "list", "object in {body}");
    let data = body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array in {body}"));
    let mut vectors: Vec<(u64, Vec<f32>)> = data
        .iter()
        .map(|item| {
            assert_eq!(item["object"], "embedding", "data[].object in {body}");
            let index = item["index"]
                .as_u64()
                .unwrap_or_else(|| panic!("data[].index in {body}"));
            let vector = match &item["embedding"] {
                Value::Array(values) => values
                    .iter()
                    .map(|value| {
                        value
                            .as_f64()
                            .unwrap_or_else(|| panic!("non-number in {body}"))
                            as f32
                    })
                    .collect(),
                Value::String(encoded) => decode_base64_floats(encoded),
                other => panic!("embedding is neither floats nor base64: {other}"),
            };
            (index, vector)
        })
        .collect();
    vectors.sort_by_key(|(index, _)| *index);
    let indexes: Vec<u64> = vectors.iter().map(|(index, _)| *index).collect();
    let expected: Vec<u64> = (0..vectors.len() as u64).collect();
    assert_eq!(indexes, expected, "indexes must be 0..n in {body}");
    vectors.into_iter().map(|(_, vector)| vector).collect()
}

/// Base64 of little-endian f32s, as OpenAI's `encoding_format: "base64"` returns them.
#[track_caller]
pub fn decode_base64_floats(encoded: &str) -> Vec<f32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_else(|error| panic!("not base64 ({error}): {encoded}"));
    assert_eq!(
        bytes.len() % 4,
        0,
        "base64 length is not a multiple of 4 bytes"
    );
    bytes
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
        .collect()
}
