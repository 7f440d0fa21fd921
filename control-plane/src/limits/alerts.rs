//! Threshold alerts leave the plane through a webhook: a task owned by `serve` POSTs each
//! recorded alert as JSON to `--alert-webhook-url` until the receiver answers 2xx, retrying with
//! capped exponential backoff. Alerts are picked with `FOR UPDATE SKIP LOCKED`, so several
//! control-plane replicas never send the same alert at the same time.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;
use uuid::Uuid;

/// Which threshold an alert reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// The period's spend reached the soft threshold (default 80 %).
    Soft,
    /// No capacity is left under the enforced (hard) limit.
    Hard,
}

impl AlertKind {
    /// The spelling stored in `limit_alerts.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Soft => "soft",
            Self::Hard => "hard",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "soft" => Some(Self::Soft),
            "hard" => Some(Self::Hard),
            _ => None,
        }
    }
}

/// How often the task looks for alerts to send.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// At most this many alerts per round, sent concurrently while their rows stay locked.
pub const BATCH: i64 = 16;
/// A receiver slower than this counts as a failed attempt.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhook body, one alert per POST.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlertPayload {
    pub id: Uuid,
    pub org_id: Uuid,
    pub scope_kind: String,
    pub scope_id: Uuid,
    pub metric: String,
    pub kind: String,
    pub threshold_pct: i32,
    pub used: i64,
    pub limit: i64,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Delay before attempt `attempts + 1` after attempt `attempts`: 1 s, 2 s, 4 s, … capped at
/// 5 minutes.
pub fn backoff_secs(attempts: u32) -> u64 {
    const CAP_SECS: u64 = 300;
    1u64.checked_shl(attempts).unwrap_or(u64::MAX).min(CAP_SECS)
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Round {
    pub delivered: usize,
    pub failed: usize,
}

/// Sends the alerts that are due (undelivered, their backoff elapsed at `now`) and records each
/// outcome, in one transaction that holds their rows locked while sending.
pub async fn deliver_due(
    pool: &PgPool,
    client: &reqwest::Client,
    url: &Url,
    now: DateTime<Utc>,
) -> Result<Round, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query!(
        r#"SELECT id, org_id, scope_kind, scope_id, metric, kind, threshold_pct, used,
                  limit_value, period_start, period_end, created_at, webhook_attempts
           FROM limit_alerts
           WHERE webhook_delivered_at IS NULL AND webhook_next_attempt_at <= $1
           ORDER BY webhook_next_attempt_at
           LIMIT $2
           FOR UPDATE SKIP LOCKED"#,
        now,
        BATCH,
    )
    .fetch_all(&mut *tx)
    .await?;
    let attempts: Vec<i32> = rows.iter().map(|row| row.webhook_attempts).collect();
    let due: Vec<AlertPayload> = rows
        .into_iter()
        .map(|row| AlertPayload {
            id: row.id,
            org_id: row.org_id,
            scope_kind: row.scope_kind,
            scope_id: row.scope_id,
            metric: row.metric,
            kind: row.kind,
            threshold_pct: row.threshold_pct,
            used: row.used,
            limit: row.limit_value,
            period_start: row.period_start,
            period_end: row.period_end,
            created_at: row.created_at,
        })
        .collect();
    if due.is_empty() {
        return Ok(Round::default());
    }
    let results = futures::future::join_all(due.iter().map(|alert| post(client, url, alert))).await;
    let mut delivered = Vec::new();
    let mut failed_ids = Vec::new();
    let mut failed_errors = Vec::new();
    let mut next_attempts = Vec::new();
    for ((alert, attempts), result) in due.iter().zip(attempts).zip(results) {
        match result {
            Ok(()) => delivered.push(alert.id),
            Err(error) => {
                tracing::warn!(alert_id = %alert.id, %error, "alert webhook failed; will retry");
                let wait = backoff_secs(u32::try_from(attempts).unwrap_or(0));
                next_attempts
                    .push(now + chrono::Duration::seconds(i64::try_from(wait).unwrap_or(300)));
                failed_ids.push(alert.id);
                failed_errors.push(error);
            }
        }
    }
    sqlx::query!(
        "UPDATE limit_alerts SET webhook_delivered_at = $2, webhook_attempts = webhook_attempts + 1,
                                 webhook_last_error = NULL
         WHERE id = ANY($1)",
        &delivered,
        now,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "UPDATE limit_alerts a SET webhook_attempts = a.webhook_attempts + 1,
                                   webhook_last_error = f.error,
                                   webhook_next_attempt_at = f.next_attempt_at
         FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[]) AS f(id, error, next_attempt_at)
         WHERE a.id = f.id",
        &failed_ids,
        &failed_errors,
        &next_attempts,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Round {
        delivered: delivered.len(),
        failed: failed_ids.len(),
    })
}

/// One POST; any answer but 2xx (or no answer in time) is a failure, described for
/// `webhook_last_error`.
async fn post(client: &reqwest::Client, url: &Url, alert: &AlertPayload) -> Result<(), String> {
    let response = client
        .post(url.clone())
        .timeout(REQUEST_TIMEOUT)
        .json(alert)
        .send()
        .await
        .map_err(|err| format!("request failed: {err}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("receiver answered HTTP {}", status.as_u16()))
    }
}

/// Runs [`deliver_due`] every second until `shutdown` is cancelled.
pub fn spawn(
    pool: PgPool,
    client: reqwest::Client,
    url: Url,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match deliver_due(&pool, &client, &url, Utc::now()).await {
                Ok(round) if round.delivered > 0 => {
                    tracing::info!(
                        delivered = round.delivered,
                        failed = round.failed,
                        "alerts sent"
                    );
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "alert delivery round failed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_caps_at_five_minutes() {
        let waits: Vec<u64> = (0..12).map(backoff_secs).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff_secs(200), 300);
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [AlertKind::Soft, AlertKind::Hard] {
            assert_eq!(AlertKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(AlertKind::parse("warn"), None);
    }

    #[test]
    fn payload_has_the_documented_fields() {
        let at: DateTime<Utc> = "2026-11-01T00:00:00Z".parse().unwrap_or_default();
        let payload = AlertPayload {
            id: Uuid::nil(),
            org_id: Uuid::nil(),
            scope_kind: "team".into(),
            scope_id: Uuid::nil(),
            metric: "budget_micros_per_month".into(),
            kind: "soft".into(),
            threshold_pct: 80,
            used: 800,
            limit: 1_000,
            period_start: at,
            period_end: at,
            created_at: at,
        };
        let json = serde_json::to_value(&payload).unwrap_or_default();
        let mut fields: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "created_at",
                "id",
                "kind",
                "limit",
                "metric",
                "org_id",
                "period_end",
                "period_start",
                "scope_id",
                "scope_kind",
                "threshold_pct",
                "used"
            ]
        );
        assert_eq!(json["period_start"], "2026-11-01T00:00:00Z");
    }
}
