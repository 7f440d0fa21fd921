//! The usage ledger as tests read it: rows of `usage_events` in the test database, awaited
//! until the edge's spool has delivered them.

use std::time::Duration;

use sqlx::Row as _;

use crate::db::TestDb;
use crate::eventually::eventually;

/// Spool delivery: sealing (≤ 0.5 s) plus a report, generous for a loaded machine.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(45);

/// One `usage_events` row, the columns tests assert on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub request_id: String,
    pub status: String,
    pub http_status: i16,
    pub requested_model: String,
    pub model: String,
    pub provider: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_micros: Option<i64>,
    pub price_version: Option<i32>,
    pub usage_source: String,
    pub stream: bool,
}

/// Every row, oldest first.
pub async fn usage_rows(db: &TestDb) -> Vec<UsageRow> {
    sqlx::query(
        "SELECT request_id, status, http_status, requested_model, model, provider, \
                input_tokens, output_tokens, cost_micros, price_version, usage_source, stream \
         FROM usage_events ORDER BY event_time",
    )
    .fetch_all(db.pool())
    .await
    .expect("read usage_events")
    .into_iter()
    .map(|row| UsageRow {
        request_id: row.get("request_id"),
        status: row.get("status"),
        http_status: row.get("http_status"),
        requested_model: row.get("requested_model"),
        model: row.get("model"),
        provider: row.get("provider"),
        input_tokens: row.get("input_tokens"),
        output_tokens: row.get("output_tokens"),
        cost_micros: row.get("cost_micros"),
        price_version: row.get("price_version"),
        usage_source: row.get("usage_source"),
        stream: row.get("stream"),
    })
    .collect()
}

/// Waits until the row of `request_id` has arrived and returns it.
pub async fn wait_for_usage(db: &TestDb, request_id: &str) -> UsageRow {
    eventually(DELIVERY_TIMEOUT, async || {
        usage_rows(db)
            .await
            .into_iter()
            .find(|row| row.request_id == request_id)
            .ok_or_else(|| format!("no usage row for {request_id} yet"))
    })
    .await
}

/// Cost in micro-dollars of `input` and `output` tokens at prices in micro-dollars per 1M
/// tokens, rounded half up as the edge rounds.
pub fn cost_micros(input: i64, output: i64, input_price: i64, output_price: i64) -> i64 {
    (input * input_price + output * output_price + 500_000) / 1_000_000
}
