//! Keeps the monthly partitions of `usage_events` created ahead of time. The migration creates
//! the first months; this task, owned by `serve`, keeps creating them so the months ahead always
//! exist and events land in their own month's partition rather than the default one.

use sqlx::PgPool;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The current month and this many months after it are kept created.
pub const MONTHS_AHEAD: i32 = 4;
/// Once a day is plenty for monthly partitions created four months ahead.
const EVERY: Duration = Duration::from_secs(24 * 60 * 60);
/// After a failure (database down), try again soon rather than a day later.
const RETRY: Duration = Duration::from_secs(60);

/// Creates any missing partitions for the current UTC month and the next [`MONTHS_AHEAD`];
/// returns how many were created. Idempotent and safe to run from several control planes.
pub async fn ensure_usage_partitions(pool: &PgPool) -> Result<i32, sqlx::Error> {
    let created = sqlx::query_scalar!(
        r#"SELECT tollgate_ensure_usage_partitions(
                  date_trunc('month', now() AT TIME ZONE 'UTC')::date, $1) AS "created!""#,
        MONTHS_AHEAD + 1
    )
    .fetch_one(pool)
    .await?;
    Ok(created)
}

/// Runs [`ensure_usage_partitions`] now and then daily until `shutdown` is cancelled.
pub fn spawn(pool: PgPool, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let wait = match ensure_usage_partitions(&pool).await {
                Ok(created) => {
                    if created > 0 {
                        tracing::info!(created, "created usage_events partitions");
                    }
                    EVERY
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not create usage_events partitions; retrying");
                    RETRY
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
    })
}
