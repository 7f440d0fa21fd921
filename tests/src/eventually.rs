//! Polling with a deadline: the only way these tests wait for something to happen.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// Pause between two attempts.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What one attempt of [`eventually`] produced: a value (done) or a reason to try again.
///
/// Implemented for `bool` (`true` = done), `Option<T>` (`Some` = done) and `Result<T, E>`
/// (`Ok` = done; the error is kept for the failure message).
pub trait Outcome {
    /// The value [`eventually`] returns once an attempt succeeds.
    type Value;

    /// `Ok` when the condition holds, else a description of why it does not (yet).
    fn into_outcome(self) -> Result<Self::Value, String>;
}

impl Outcome for bool {
    type Value = ();

    fn into_outcome(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("condition was false".to_owned())
        }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;

    fn into_outcome(self) -> Result<T, String> {
        self.ok_or_else(|| "got None".to_owned())
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;

    fn into_outcome(self) -> Result<T, String> {
        self.map_err(|error| format!("{error:#}"))
    }
}

/// Runs `attempt` every 50 ms until it succeeds, and returns its value.
///
/// Panics with the last failure reason once `timeout` has passed. An attempt still running at
/// the deadline is cancelled, so a hung request cannot stretch the wait.
///
/// ```ignore
/// let status = eventually(Duration::from_secs(2), async || {
///     let reply = client.chat(Some(key), &body).await?;
///     anyhow::ensure!(reply.status == 200, "status {}", reply.status);
///     Ok::<_, anyhow::Error>(reply)
/// })
/// .await;
/// ```
pub async fn eventually<O: Outcome>(
    timeout: Duration,
    mut attempt: impl AsyncFnMut() -> O,
) -> O::Value {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let last_failure = match tokio::time::timeout(remaining.max(POLL_INTERVAL), attempt()).await
        {
            Ok(outcome) => match outcome.into_outcome() {
                Ok(value) => return value,
                Err(reason) => reason,
            },
            Err(_) => "the attempt was still running at the deadline".to_owned(),
        };
        if Instant::now() >= deadline {
            panic!(
                "condition not met within {timeout:?} ({attempts} attempts); last failure: {last_failure}"
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
