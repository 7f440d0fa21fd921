//! Validate phase, part one: read the request body without ever holding more than the limit,
//! and without more bytes of bodies in flight across all requests than the edge's budget, so
//! many large bodies at once wait their turn instead of taking the edge's memory together.

use super::server::BodyReadTimeout;
use crate::error::GatewayError;
use axum::body::Body;
use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget units: one permit per KiB, so a 16 MiB body is 16384 permits.
const UNIT_BYTES: usize = 1024;
/// A body is charged twice its size: its bytes, and the strings parsed out of them.
const CHARGE_FACTOR: usize = 2;
/// How long a body waits for room in the budget before the request gets a 503.
const BUDGET_WAIT: Duration = Duration::from_secs(10);

pub const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: usize = 256 * 1024 * 1024;

/// Bytes of request bodies the edge holds at once, across all requests.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    units: Arc<Semaphore>,
    total_units: usize,
}

impl BodyBudget {
    pub fn new(max_bytes_in_flight: usize) -> Self {
        let total_units = (max_bytes_in_flight / UNIT_BYTES).clamp(1, Semaphore::MAX_PERMITS);
        Self {
            units: Arc::new(Semaphore::new(total_units)),
            total_units,
        }
    }

    /// Takes room for `bytes` more body bytes (a body larger than the whole budget takes all
    /// of it, so it still runs, alone).
    async fn take(
        &self,
        bytes: usize,
        held: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), GatewayError> {
        let wanted = bytes.saturating_mul(CHARGE_FACTOR).div_ceil(UNIT_BYTES);
        let already = held.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
        let more = wanted.min(self.total_units.saturating_sub(already));
        if more == 0 {
            return Ok(());
        }
        let more = u32::try_from(more).unwrap_or(u32::MAX);
        let acquire = Arc::clone(&self.units).acquire_many_owned(more);
        let permit = tokio::time::timeout(BUDGET_WAIT, acquire)
            .await
            .map_err(|_| GatewayError::BodyBudgetExhausted)?
            .map_err(|_| GatewayError::BodyBudgetExhausted)?;
        match held {
            Some(existing) => existing.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }
}

impl Default for BodyBudget {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BODY_BYTES_IN_FLIGHT)
    }
}

/// A request body read whole, holding its share of the budget until dropped.
#[derive(Debug)]
pub struct ReadBody {
    bytes: Bytes,
    _budget: Option<OwnedSemaphorePermit>,
}

impl std::ops::Deref for ReadBody {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

pub async fn read_limited(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    budget: &BodyBudget,
) -> Result<ReadBody, GatewayError> {
    let too_large = GatewayError::BodyTooLarge { limit_bytes: limit };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large);
    }
    let mut held = None;
    if let Some(length) = declared {
        budget.take(length, &mut held).await?;
    }
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(body_error)?;
        if buffer.len() + piece.len() > limit {
            return Err(too_large);
        }
        buffer.extend_from_slice(&piece);
        if declared.is_none_or(|length| buffer.len() > length) {
            budget.take(buffer.len(), &mut held).await?;
        }
    }
    Ok(ReadBody {
        bytes: buffer.freeze(),
        _budget: held,
    })
}

/// A body read failure as the client sees it: its own slowness (408) or a broken body (400).
fn body_error(err: axum::Error) -> GatewayError {
    let inner = err.into_inner();
    match inner.downcast_ref::<BodyReadTimeout>() {
        Some(BodyReadTimeout(limit)) => GatewayError::BodyReadTimeout {
            seconds: limit.as_secs(),
        },
        None => GatewayError::BodyRead(inner.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bodies_past_the_budget_wait_for_room_and_a_huge_one_takes_it_all() {
        let budget = BodyBudget::new(64 * 1024);
        let mut first = None;
        budget.take(20 * 1024, &mut first).await.expect("room");
        assert_eq!(budget.units.available_permits(), 24);
        let mut second = None;
        let waiting = tokio::time::timeout(
            Duration::from_millis(50),
            budget.take(20 * 1024, &mut second),
        );
        assert!(
            waiting.await.is_err(),
            "no room until the first body is gone"
        );
        drop(first);
        budget
            .take(20 * 1024, &mut second)
            .await
            .expect("room again");
        drop(second);

        let mut huge = None;
        budget
            .take(10 << 20, &mut huge)
            .await
            .expect("a body larger than the budget runs alone");
        assert_eq!(budget.units.available_permits(), 0);
    }
}
