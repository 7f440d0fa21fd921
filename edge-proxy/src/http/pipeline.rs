//! The phases every model endpoint shares (chat, Anthropic messages, embeddings):
//! authenticate and bind limits, start the meter, count, reserve, and the response headers
//! that report limits and spend. Each endpoint composes them around its own parse, call and
//! rendering, so a phase is written once.

use super::AppState;
use super::chat::RequestId;
use crate::auth;
use crate::config::runtime::Runtime;
use crate::config::snapshot::VirtualKey;
use crate::error::GatewayError;
use crate::limits::RENEWAL_WAIT;
use crate::limits::admission::{KeyLimits, Refusal};
use crate::limits::headers::RateHeaders;
use crate::limits::spec::Demand;
use crate::usage::{RequestMeter, Settlement};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// An authenticated request: one runtime for its whole life (however many swaps happen
/// meanwhile), its key, and the key's limits.
pub struct Caller {
    pub runtime: Arc<Runtime>,
    pub key: Arc<VirtualKey>,
    pub limits: KeyLimits,
}

impl Caller {
    pub fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Self, GatewayError> {
        let runtime = state.runtime.load().ok_or(GatewayError::NotReady)?;
        let key = auth::authenticate(&runtime, state.runtime.keys(), headers, auth::now_unix_ms())?;
        let limits = state.limiter.bind(&runtime, &key);
        Ok(Self {
            runtime,
            key,
            limits,
        })
    }

    /// Starts the request's usage meter; from here on exactly one usage event is recorded.
    pub fn meter(
        &self,
        state: &AppState,
        request_id: &RequestId,
    ) -> Result<RequestMeter, GatewayError> {
        if state.spool.refuses_requests() {
            return Err(GatewayError::UsageSpoolFull);
        }
        Ok(RequestMeter::start(
            &state.meter,
            &self.key,
            &request_id.0,
            self.runtime.version,
        ))
    }

    /// x-ratelimit-* for keys with a requests- or tokens-per-minute limit; on every response
    /// after authentication, success or error.
    pub fn add_rate_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in RateHeaders::for_key(&self.limits).pairs() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
}

/// Reserve phase: the request's worst case against every limit of its key, all or nothing.
/// On a miss that a lease renewal may cure, wait (at most 200 ms) for one and retry once.
/// The admission goes into the meter, which settles it with the usage event.
pub async fn reserve(
    state: &AppState,
    limits: &KeyLimits,
    demand: Demand,
    meter: &mut RequestMeter,
) -> Result<(), GatewayError> {
    if limits.is_empty() {
        return Ok(());
    }
    let admission = match limits.try_admit(demand) {
        Ok(admission) => admission,
        Err(refusal) if refusal.renewable => {
            state.limiter.await_renewal(RENEWAL_WAIT).await;
            limits
                .try_admit(demand)
                .map_err(|refusal| rejected(state, refusal))?
        }
        Err(refusal) => return Err(rejected(state, refusal)),
    };
    meter.admitted(admission);
    Ok(())
}

fn rejected(state: &AppState, refusal: Refusal) -> GatewayError {
    let exceeded = refusal.exceeded;
    state
        .metrics
        .limit_rejected(exceeded.level.as_str(), exceeded.metric.as_str());
    GatewayError::LimitExceeded(exceeded)
}

/// Tokens and cost of this request, so a client can see what it spent without a report.
pub fn usage_headers(headers: &mut HeaderMap, settlement: &Settlement) {
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set(
        "x-tollgate-input-tokens",
        settlement.usage.input_tokens.to_string(),
    );
    set(
        "x-tollgate-output-tokens",
        settlement.usage.output_tokens.to_string(),
    );
    set(
        "x-tollgate-priced",
        settlement.cost_micros.is_some().to_string(),
    );
    if let Some(cost) = settlement.cost_micros {
        set("x-tollgate-cost-micros", cost.to_string());
    }
    if let Some(version) = settlement.price_version {
        set("x-tollgate-price-version", version.to_string());
    }
}
