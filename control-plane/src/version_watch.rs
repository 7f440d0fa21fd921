//! Follows the config version with LISTEN/NOTIFY so config changes are pushed to edges as they
//! commit. A periodic re-read covers notifications lost while the listener reconnects.

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const CONFIG_CHANNEL: &str = "tollgate_config";
const SAFETY_REREAD: Duration = Duration::from_secs(5);
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

pub async fn current_version(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let version = sqlx::query_scalar!("SELECT version FROM config_version")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(version).unwrap_or(0))
}

/// Starts the watcher task; the returned receiver always holds the newest version seen.
pub async fn spawn(
    pool: PgPool,
    shutdown: CancellationToken,
) -> Result<watch::Receiver<u64>, sqlx::Error> {
    let initial = current_version(&pool).await?;
    let (sender, receiver) = watch::channel(initial);
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            if let Err(err) = follow(&pool, &sender, &shutdown).await {
                tracing::warn!(error = %err, "config version listener failed; reconnecting");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(RECONNECT_DELAY) => {}
                }
            }
        }
    });
    Ok(receiver)
}

fn publish(sender: &watch::Sender<u64>, version: u64) {
    sender.send_if_modified(|current| {
        if version > *current {
            *current = version;
            true
        } else {
            false
        }
    });
}

async fn follow(
    pool: &PgPool,
    sender: &watch::Sender<u64>,
    shutdown: &CancellationToken,
) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CONFIG_CHANNEL).await?;
    // Anything committed before LISTEN took effect was not notified to us.
    publish(sender, current_version(pool).await?);
    let mut reread = tokio::time::interval(SAFETY_REREAD);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = reread.tick() => publish(sender, current_version(pool).await?),
            notification = listener.try_recv() => match notification? {
                Some(notification) => match notification.payload().parse::<u64>() {
                    Ok(version) => publish(sender, version),
                    Err(_) => tracing::warn!(payload = notification.payload(), "ignoring malformed config notification"),
                },
                // Connection lost: the next try_recv reconnects; re-read what we may have missed.
                None => publish(sender, current_version(pool).await?),
            },
        }
    }
}
