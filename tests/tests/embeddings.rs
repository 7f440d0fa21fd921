#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `POST /v1/embeddings` end to end: the demo's `mock-embed` offline, and OpenAI, Azure
//! OpenAI and Gemini providers through the fake in their own wire formats; float and base64
//! encodings (the openai SDKs' default), usage billed in the ledger, and a clear 400 for a
//! provider without embeddings.

mod provider_support;

use provider_support::{AZURE_API_VERSION, World, provider_name};
use serde_json::json;
use tollgate_e2e::{
    FAKE_API_KEY, FAKE_EMBEDDING_DIMENSIONS, FAKE_INPUT_PRICE_MICROS, FAKE_OUTPUT_PRICE_MICROS,
    Stack, WireFormat, cost_micros, embedding_vectors, embeddings_body, fake_embedding,
    fake_embedding_model, wait_for_usage,
};

fn embed_model_name(format: WireFormat) -> String {
    format!("embed-{}", format.kind())
}

/// A world whose providers also have an embeddings model `embed-<kind>`.
async fn embedding_world(formats: &[WireFormat]) -> World {
    let world = World::start(formats, &[]).await;
    for format in formats {
        world
            .stack
            .add_fake_model(
                &provider_name(*format),
                &embed_model_name(*format),
                fake_embedding_model(*format).unwrap(),
                &[],
            )
            .await;
    }
    world
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_embed_returns_deterministic_vectors_as_floats_and_base64() {
    let stack = Stack::start().await;
    let client = stack.client();
    let key = stack.demo.key.as_str();
    let inputs = json!(["the quick brown fox", "jumps over", "the quick brown fox"]);

    let floats = client
        .embeddings(Some(key), &embeddings_body("mock-embed", inputs.clone()))
        .await
        .unwrap();
    assert_eq!(floats.status, 200, "{}", floats.body);
    let body = floats.json();
    assert_eq!(body["model"], "mock-embed", "{body}");
    let vectors = embedding_vectors(&body);
    assert_eq!(vectors.len(), 3, "{body}");
    assert!(!vectors[0].is_empty(), "{body}");
    assert_eq!(vectors[0], vectors[2], "same text, same vector: {body}");
    assert_ne!(
        vectors[0], vectors[1],
        "different text, different vector: {body}"
    );
    assert!(
        body["data"][0]["embedding"].is_array(),
        "floats unless asked otherwise: {body}"
    );
    let prompt_tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt_tokens > 0, "{body}");
    assert_eq!(body["usage"]["total_tokens"], prompt_tokens, "{body}");

    let mut request = embeddings_body("mock-embed", inputs);
    request["encoding_format"] = json!("base64");
    let encoded = client.embeddings(Some(key), &request).await.unwrap();
    assert_eq!(encoded.status, 200, "{}", encoded.body);
    let body = encoded.json();
    assert!(body["data"][0]["embedding"].is_string(), "{body}");
    assert_eq!(
        embedding_vectors(&body),
        vectors,
        "base64 decodes to the floats"
    );

    let row = wait_for_usage(&stack.db, floats.request_id().unwrap()).await;
    assert_eq!(row.status, "ok", "{row:?}");
    assert_eq!(row.input_tokens, prompt_tokens as i64, "{row:?}");
    assert_eq!(row.output_tokens, 0, "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_embeddings_reach_each_upstream_in_its_format_and_come_back_exact() {
    let formats = [
        WireFormat::OpenAi,
        WireFormat::AzureOpenAi,
        WireFormat::Gemini,
    ];
    let world = embedding_world(&formats).await;
    let client = world.stack.client();
    for format in formats {
        let model = embed_model_name(format);
        let upstream_model = fake_embedding_model(format).unwrap();
        let texts = ["first text", "second one here"];

        let reply = client
            .embeddings(Some(world.key()), &embeddings_body(&model, json!(texts)))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{format:?}: {}", reply.body);
        let body = reply.json();
        let expected: Vec<Vec<f32>> = texts
            .iter()
            .map(|text| fake_embedding(text, FAKE_EMBEDDING_DIMENSIONS))
            .collect();
        assert_eq!(embedding_vectors(&body), expected, "{format:?}: {body}");
        assert!(
            body["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
            "{format:?}: {body}"
        );
        assert!(!reply.body.contains(FAKE_API_KEY), "provider key leaked");

        let upstream = world.fake.last_request().unwrap();
        match format {
            WireFormat::OpenAi => {
                assert_eq!(upstream.path, "/v1/embeddings");
                assert_eq!(upstream.body["model"], upstream_model);
                assert_eq!(upstream.body["input"], json!(texts));
            }
            WireFormat::AzureOpenAi => {
                assert_eq!(
                    upstream.path_only(),
                    format!("/openai/deployments/{upstream_model}/embeddings")
                );
                assert_eq!(
                    upstream.query("api-version").as_deref(),
                    Some(AZURE_API_VERSION)
                );
                assert_eq!(upstream.header("api-key"), Some(FAKE_API_KEY));
            }
            WireFormat::Gemini => {
                let path = upstream.path_only().to_owned();
                assert!(
                    path == format!("/v1beta/models/{upstream_model}:batchEmbedContents")
                        || path == format!("/v1beta/models/{upstream_model}:embedContent"),
                    "{path}"
                );
            }
            WireFormat::Anthropic => unreachable!(),
        }

        // base64, as the openai SDKs ask by default, and fewer dimensions.
        let mut request = embeddings_body(&model, json!("first text"));
        request["encoding_format"] = json!("base64");
        request["dimensions"] = json!(3);
        let reply = client
            .embeddings(Some(world.key()), &request)
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{format:?}: {}", reply.body);
        let body = reply.json();
        assert!(
            body["data"][0]["embedding"].is_string(),
            "{format:?}: {body}"
        );
        assert_eq!(
            embedding_vectors(&body),
            vec![fake_embedding("first text", 3)],
            "{format:?}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_billed_in_the_ledger() {
    let world = embedding_world(&[WireFormat::OpenAi]).await;
    let reply = world
        .stack
        .client()
        .embeddings(
            Some(world.key()),
            &embeddings_body(&embed_model_name(WireFormat::OpenAi), json!([WORDS_20])),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The fake counts one token per word.
    assert_eq!(reply.json()["usage"]["prompt_tokens"], 20);
    let row = wait_for_usage(&world.stack.db, reply.request_id().unwrap()).await;
    assert_eq!(
        (row.status.as_str(), row.usage_source.as_str()),
        ("ok", "provider"),
        "{row:?}"
    );
    assert_eq!((row.input_tokens, row.output_tokens), (20, 0), "{row:?}");
    let expected = cost_micros(20, 0, FAKE_INPUT_PRICE_MICROS, FAKE_OUTPUT_PRICE_MICROS);
    assert!(
        expected > 0,
        "the input must cost something to prove billing"
    );
    assert_eq!(
        row.cost_micros,
        Some(cost_micros(
            20,
            0,
            FAKE_INPUT_PRICE_MICROS,
            FAKE_OUTPUT_PRICE_MICROS
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_from_a_chat_only_provider_are_a_400_naming_the_model() {
    let world = World::start(&[WireFormat::Anthropic], &[]).await;
    let reply = world
        .stack
        .client()
        .embeddings(
            Some(world.key()),
            &embeddings_body(
                &provider_support::model_name(WireFormat::Anthropic),
                json!("x"),
            ),
        )
        .await
        .unwrap();
    reply.assert_openai_error(
        400,
        "invalid_request_error",
        "unsupported_parameter",
        Some("model"),
    );
    assert_eq!(world.fake.request_count(), 0, "nothing was sent upstream");
}

/// Twenty words: enough input tokens that their cost is not rounded away.
const WORDS_20: &str = "one two three four five six seven eight nine ten \
                        eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty";
