#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The usage ledger end to end: every authenticated request becomes exactly one row in
//! `usage_events` with the tokens and cost the client was told, whatever happens to the control
//! plane in between, and prices apply by the time a request started.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use sqlx::Row;
use tollgate_e2e::{PROPAGATION_TIMEOUT, Stack, chat_body, eventually, http_client};

/// Spool delivery: sealing (≤ 0.5 s) plus a report, or a reconnect after an outage.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(45);

/// Demo prices of mock-small, micro-dollars per 1M tokens.
const MOCK_SMALL_INPUT: i64 = 100_000;
const MOCK_SMALL_OUTPUT: i64 = 400_000;

fn cost(input: i64, output: i64, input_price: i64, output_price: i64) -> i64 {
    (input * input_price + output * output_price + 500_000) / 1_000_000
}

#[derive(Debug)]
struct Row_ {
    request_id: String,
    status: String,
    requested_model: String,
    model: String,
    input_tokens: i64,
    output_tokens: i64,
    cost_micros: Option<i64>,
    price_version: Option<i32>,
    usage_source: String,
    stream: bool,
    ttft_ms: Option<i32>,
}

async fn usage_rows(stack: &Stack) -> Vec<Row_> {
    sqlx::query(
        "SELECT request_id, status, requested_model, model, input_tokens, output_tokens, \
                cost_micros, price_version, usage_source, stream, ttft_ms \
         FROM usage_events ORDER BY event_time",
    )
    .fetch_all(stack.db.pool())
    .await
    .unwrap()
    .into_iter()
    .map(|row| Row_ {
        request_id: row.get("request_id"),
        status: row.get("status"),
        requested_model: row.get("requested_model"),
        model: row.get("model"),
        input_tokens: row.get("input_tokens"),
        output_tokens: row.get("output_tokens"),
        cost_micros: row.get("cost_micros"),
        price_version: row.get("price_version"),
        usage_source: row.get("usage_source"),
        stream: row.get("stream"),
        ttft_ms: row.get("ttft_ms"),
    })
    .collect()
}

async fn row_count(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM usage_events")
        .fetch_one(stack.db.pool())
        .await
        .unwrap()
}

/// Waits until exactly `n` rows are in, then checks no row is a duplicate.
async fn wait_for_rows(stack: &Stack, n: i64) -> Vec<Row_> {
    eventually(DELIVERY_TIMEOUT, async || {
        let count = row_count(stack).await;
        anyhow::ensure!(count == n, "{count} usage rows, want {n}");
        Ok::<_, anyhow::Error>(())
    })
    .await;
    let rows = usage_rows(stack).await;
    let distinct: HashSet<&str> = rows.iter().map(|row| row.request_id.as_str()).collect();
    assert_eq!(
        distinct.len(),
        rows.len(),
        "a request was counted twice: {rows:#?}"
    );
    rows
}

/// Opens a stream, reads its first `events` SSE events, then hangs up. Returns the request id.
async fn abandon_stream(base_url: &str, key: &str, events: usize) -> String {
    let mut body = chat_body("mock-small", "tell me a long story");
    body["stream"] = json!(true);
    let response = http_client()
        .post(format!("{base_url}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut stream = response.bytes_stream();
    let mut seen = 0;
    let mut raw = Vec::new();
    while seen < events {
        let chunk = stream.next().await.unwrap().unwrap();
        raw.extend_from_slice(&chunk);
        seen = raw.windows(2).filter(|w| w == b"\n\n").count();
    }
    drop(stream);
    request_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_yields_exactly_one_usage_row_with_the_tokens_and_cost_the_client_saw() {
    let stack = Stack::start().await;
    let client = stack.client();
    let key = stack.demo.key.clone();
    // request id → (input tokens, output tokens, cost) as the client was told.
    let mut told: HashMap<String, (i64, i64, i64)> = HashMap::new();

    for i in 0..4 {
        let reply = client
            .chat(
                Some(&key),
                &chat_body("mock-small", &format!("plain request number {i}")),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
        let usage = &reply.json()["usage"];
        let input = usage["prompt_tokens"].as_i64().unwrap();
        let output = usage["completion_tokens"].as_i64().unwrap();
        let header = |name: &str| reply.header(name).unwrap().parse::<i64>().unwrap();
        assert_eq!(header("x-tollgate-input-tokens"), input);
        assert_eq!(header("x-tollgate-output-tokens"), output);
        assert_eq!(
            header("x-tollgate-cost-micros"),
            cost(input, output, MOCK_SMALL_INPUT, MOCK_SMALL_OUTPUT)
        );
        assert_eq!(reply.header("x-tollgate-price-version"), Some("1"));
        told.insert(
            reply.request_id().unwrap().to_owned(),
            (input, output, header("x-tollgate-cost-micros")),
        );
    }

    for i in 0..4 {
        let mut body = chat_body("mock-small", &format!("streamed request number {i}"));
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
        let reply = client.chat_stream(Some(&key), &body).await.unwrap();
        assert!(reply.has_done(), "{}", reply.raw);
        let chunks = reply.usage_chunks();
        assert_eq!(chunks.len(), 1, "{}", reply.raw);
        let usage = &chunks[0]["usage"];
        let input = usage["prompt_tokens"].as_i64().unwrap();
        let output = usage["completion_tokens"].as_i64().unwrap();
        let cost_told = chunks[0]["tollgate"]["cost_micros"].as_i64().unwrap();
        assert_eq!(
            cost_told,
            cost(input, output, MOCK_SMALL_INPUT, MOCK_SMALL_OUTPUT)
        );
        told.insert(
            reply.header("x-request-id").unwrap().to_owned(),
            (input, output, cost_told),
        );
    }

    // Streams without include_usage are billed all the same.
    let mut quiet_streams = Vec::new();
    for _ in 0..2 {
        let mut body = chat_body("mock-small", "no usage for me please");
        body["stream"] = json!(true);
        let reply = client.chat_stream(Some(&key), &body).await.unwrap();
        assert!(
            reply.has_done() && reply.usage_chunks().is_empty(),
            "{}",
            reply.raw
        );
        quiet_streams.push(reply.header("x-request-id").unwrap().to_owned());
    }

    // Clients that hang up mid-stream: billed for what was produced, marked as disconnected.
    let mut abandoned = Vec::new();
    for _ in 0..3 {
        abandoned.push(abandon_stream(&stack.edge.base_url(), &key, 3).await);
    }

    // Authenticated requests that fail are recorded too; unauthenticated ones are not.
    let not_found = client
        .chat(Some(&key), &chat_body("no-such-model", "x"))
        .await
        .unwrap();
    assert_eq!(not_found.status, 404);
    let bad_json = client
        .chat_raw(Some(&key), "{oops".to_owned())
        .await
        .unwrap();
    assert_eq!(bad_json.status, 400);
    let unauthenticated = client
        .chat(Some("tg_not_a_key"), &chat_body("mock-small", "x"))
        .await
        .unwrap();
    assert_eq!(unauthenticated.status, 401);

    let rows = wait_for_rows(&stack, 4 + 4 + 2 + 3 + 2).await;
    let by_request: HashMap<&str, &Row_> = rows
        .iter()
        .map(|row| (row.request_id.as_str(), row))
        .collect();

    for (request_id, (input, output, cost_told)) in &told {
        let row = by_request[request_id.as_str()];
        assert_eq!(
            (row.input_tokens, row.output_tokens),
            (*input, *output),
            "{row:?}"
        );
        assert_eq!(row.cost_micros, Some(*cost_told), "{row:?}");
        assert_eq!(row.price_version, Some(1));
        assert_eq!(
            (row.status.as_str(), row.usage_source.as_str()),
            ("ok", "provider")
        );
        assert_eq!(row.model, "mock-small");
    }
    for request_id in &quiet_streams {
        let row = by_request[request_id.as_str()];
        assert_eq!(row.status, "ok");
        assert_eq!(
            row.usage_source, "provider",
            "usage is always requested upstream: {row:?}"
        );
        assert!(
            row.output_tokens > 0 && row.ttft_ms.is_some() && row.stream,
            "{row:?}"
        );
    }
    for request_id in &abandoned {
        let row = by_request[request_id.as_str()];
        assert_eq!(row.status, "client_disconnected", "{row:?}");
        assert!(
            row.input_tokens > 0,
            "the prompt was sent upstream: {row:?}"
        );
        assert!(
            row.output_tokens > 0 && row.output_tokens < 24 * 4,
            "billed for what was produced: {row:?}"
        );
        assert_eq!(
            row.cost_micros,
            Some(cost(
                row.input_tokens,
                row.output_tokens,
                MOCK_SMALL_INPUT,
                MOCK_SMALL_OUTPUT
            ))
        );
    }
    let failed: Vec<&&Row_> = by_request
        .values()
        .filter(|row| row.status == "client_error")
        .collect();
    assert_eq!(failed.len(), 2, "{rows:#?}");
    assert!(
        failed
            .iter()
            .any(|row| row.requested_model == "no-such-model" && row.model.is_empty())
    );
    assert!(
        failed.iter().all(|row| row.input_tokens == 0
            && row.output_tokens == 0
            && row.cost_micros.is_none())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_killed_during_traffic_loses_and_doubles_nothing() {
    let mut stack = Stack::start().await;
    let client = stack.client();
    let key = stack.demo.key.clone();
    let mut request_ids = HashSet::new();
    for i in 0..60 {
        if i == 20 {
            stack.cp.stop(); // SIGKILL, possibly in the middle of ingesting a batch
        }
        if i == 40 {
            stack.cp.restart().await;
        }
        let mut body = chat_body("mock-small", &format!("request {i}"));
        if i % 2 == 1 {
            body["stream"] = json!(true);
            let reply = client.chat_stream(Some(&key), &body).await.unwrap();
            assert!(reply.has_done(), "{}", reply.raw);
            request_ids.insert(reply.header("x-request-id").unwrap().to_owned());
        } else {
            let reply = client.chat(Some(&key), &body).await.unwrap();
            assert_eq!(reply.status, 200, "{}", reply.body);
            request_ids.insert(reply.request_id().unwrap().to_owned());
        }
    }
    let rows = wait_for_rows(&stack, 60).await;
    let stored: HashSet<String> = rows.into_iter().map(|row| row.request_id).collect();
    assert_eq!(stored, request_ids);
    let rolled_up: i64 = sqlx::query_scalar("SELECT sum(requests)::bigint FROM usage_hourly")
        .fetch_one(stack.db.pool())
        .await
        .unwrap();
    assert_eq!(rolled_up, 60, "rollups count every request once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_change_applies_only_to_later_requests() {
    let stack = Stack::start().await;
    let client = stack.client();
    let key = stack.demo.key.clone();
    let before = client
        .chat(Some(&key), &chat_body("mock-small", "old price"))
        .await
        .unwrap();
    assert_eq!(before.header("x-tollgate-price-version"), Some("1"));

    stack
        .cp
        .ctl_json(&[
            "models",
            "set-price",
            "mock-small",
            "--input-price",
            "1.00",
            "--output-price",
            "2.00",
        ])
        .await;
    let after = eventually(PROPAGATION_TIMEOUT, async || {
        let reply = client
            .chat(Some(&key), &chat_body("mock-small", "new price"))
            .await?;
        anyhow::ensure!(
            reply.header("x-tollgate-price-version") == Some("2"),
            "still the old price"
        );
        Ok::<_, anyhow::Error>(reply)
    })
    .await;

    let rows = eventually(DELIVERY_TIMEOUT, async || {
        let rows = usage_rows(&stack).await;
        let ids: HashSet<&str> = rows.iter().map(|row| row.request_id.as_str()).collect();
        (ids.contains(before.request_id().unwrap()) && ids.contains(after.request_id().unwrap()))
            .then_some(rows)
    })
    .await;
    for row in &rows {
        let expected = match row.price_version {
            Some(1) => cost(
                row.input_tokens,
                row.output_tokens,
                MOCK_SMALL_INPUT,
                MOCK_SMALL_OUTPUT,
            ),
            Some(2) => cost(row.input_tokens, row.output_tokens, 1_000_000, 2_000_000),
            other => panic!("unexpected price version {other:?}: {row:?}"),
        };
        assert_eq!(row.cost_micros, Some(expected), "{row:?}");
    }
    let row_of = |id: &str| rows.iter().find(|row| row.request_id == id).unwrap();
    assert_eq!(row_of(before.request_id().unwrap()).price_version, Some(1));
    assert_eq!(row_of(after.request_id().unwrap()).price_version, Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_a_price_still_answers_and_is_recorded_as_unpriced() {
    let stack = Stack::start().await;
    // Half a price is a mistake, not a free model.
    let stderr = stack
        .cp
        .ctl_failure(&[
            "models",
            "create",
            "mock-half",
            "--provider",
            "mock",
            "--input-price",
            "1",
        ])
        .await;
    assert!(stderr.contains("INVALID_ARGUMENT"), "{stderr}");
    // No price at all: the model is served and its usage is unpriced.
    stack
        .cp
        .ctl_json(&["models", "create", "mock-free-lunch", "--provider", "mock"])
        .await;
    stack.wait_model_listed("mock-free-lunch").await;

    let reply = stack
        .client()
        .chat(
            Some(&stack.demo.key),
            &chat_body("mock-free-lunch", "what does this cost?"),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-tollgate-priced"), Some("false"));
    assert!(reply.header("x-tollgate-cost-micros").is_none());

    let rows = wait_for_rows(&stack, 1).await;
    assert_eq!(
        rows[0].cost_micros, None,
        "unpriced is not free: {:?}",
        rows[0]
    );
    assert_eq!(rows[0].price_version, None);
    assert!(rows[0].output_tokens > 0);
    let unpriced: i64 =
        sqlx::query_scalar("SELECT sum(unpriced_requests)::bigint FROM usage_hourly")
            .fetch_one(stack.db.pool())
            .await
            .unwrap();
    assert_eq!(unpriced, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_rejects_requests_until_the_control_plane_drains_it() {
    let mut stack = Stack::start_with_edge_args(&["--spool-max-bytes", "1"]).await;
    let client = stack.client();
    let key = stack.demo.key.clone();
    stack.cp.stop();
    let mut served = 0;

    let rejected: Value = eventually(PROPAGATION_TIMEOUT, async || {
        let reply = client
            .chat(Some(&key), &chat_body("mock-small", "fill the spool"))
            .await?;
        if reply.status == 200 {
            served += 1;
        }
        anyhow::ensure!(reply.status == 503, "answered {}", reply.status);
        Ok::<_, anyhow::Error>(reply.json())
    })
    .await;
    assert_eq!(rejected["error"]["code"], "usage_spool_full", "{rejected}");
    assert!(served >= 1, "the first request fits");

    stack.cp.restart().await;
    eventually(DELIVERY_TIMEOUT, async || {
        let reply = client
            .chat(Some(&key), &chat_body("mock-small", "drained?"))
            .await?;
        if reply.status == 200 {
            served += 1;
        }
        anyhow::ensure!(reply.status == 200, "answered {}", reply.status);
        Ok::<_, anyhow::Error>(())
    })
    .await;
    // Every served request is recorded, refused ones are not.
    wait_for_rows(&stack, served).await;
}
