//! One request's usage, from authentication to the end of its response. Whatever way the
//! request ends (error, success, broken stream, client hanging up), exactly one event is
//! recorded: the explicit endings record it, and `Drop` records the rest as a disconnect,
//! billed for what was produced. The request's limit `Admission` rides along and settles in
//! the same moment, with the event's tokens and cost, so limits and the ledger agree.

use super::event::{UsageEvent, UsageSource, UsageStatus};
use super::spool::UsageSink;
use crate::api::chat::Usage;
use crate::auth::now_unix_ms;
use crate::config::runtime::ModelRoute;
use crate::config::snapshot::VirtualKey;
use crate::error::GatewayError;
use crate::limits::admission::Admission;
use crate::limits::spec::Demand;
use crate::pricing::{Price, TokenUsage};
use crate::providers::{ProviderError, TimeoutPhase};
use crate::tokens::TokenCounter;
use std::time::Instant;
use tollgate_contract::usage::{MAX_REQUESTED_MODEL_BYTES, client_text};

/// Most tokens or micro-dollars one request can settle against limits (a billion: far beyond
/// any real request, far below overflowing the counters).
const MAX_SETTLED_UNITS: u64 = 1_000_000_000;

/// HTTP status recorded for a client that went away (nginx's convention; never sent).
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// What the edge needs to meter requests, built once at startup.
#[derive(Debug, Clone)]
pub struct MeterContext {
    pub sink: UsageSink,
    pub counter: TokenCounter,
    pub edge_id: String,
}

/// The tokens and cost a request was billed for, for response headers and the usage chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    pub usage: TokenUsage,
    pub cost_micros: Option<i64>,
    pub price_version: Option<u32>,
    pub source: UsageSource,
}

#[derive(Debug)]
pub struct RequestMeter {
    sink: UsageSink,
    counter: TokenCounter,
    /// Taken when the event is recorded; `Some` means the request has not ended yet.
    event: Option<UsageEvent>,
    started: Instant,
    upstream_model: String,
    price: Option<Price>,
    prompt_tokens: u64,
    upstream_called: bool,
    first_output_at: Option<Instant>,
    counted_output_tokens: u64,
    provider_usage: Option<TokenUsage>,
    /// Settled exactly when the event is recorded.
    admission: Option<Admission>,
}

impl RequestMeter {
    pub fn start(
        context: &MeterContext,
        key: &VirtualKey,
        request_id: &str,
        config_version: u64,
    ) -> Self {
        let event_time_unix_ms = now_unix_ms();
        let event = UsageEvent {
            event_id: crate::ids::time_ordered_uuid(u64::try_from(event_time_unix_ms).unwrap_or(0))
                .to_string(),
            request_id: request_id.to_owned(),
            event_time_unix_ms,
            org_id: key.org.id.clone(),
            team_id: key.team.id.clone(),
            project_id: key.project.id.clone(),
            user_id: key.user.as_ref().map(|user| user.id.clone()),
            key_id: key.id.clone(),
            requested_model: String::new(),
            model: String::new(),
            provider: String::new(),
            input_tokens: 0,
            cached_input_tokens: 0,
            output_tokens: 0,
            cost_micros: None,
            price_version: None,
            saved_cost_micros: 0,
            latency_ms: 0,
            ttft_ms: None,
            status: UsageStatus::ClientError,
            http_status: 0,
            cache_hit: false,
            fallback_level: 0,
            variant: None,
            edge_id: context.edge_id.clone(),
            config_version,
            stream: false,
            usage_source: UsageSource::None,
        };
        Self {
            sink: context.sink.clone(),
            counter: context.counter.clone(),
            event: Some(event),
            started: Instant::now(),
            upstream_model: String::new(),
            price: None,
            prompt_tokens: 0,
            upstream_called: false,
            first_output_at: None,
            counted_output_tokens: 0,
            provider_usage: None,
            admission: None,
        }
    }

    /// Hands the request's limit reservations to the meter, which settles them with the usage
    /// event on whatever path the request ends.
    pub fn admitted(&mut self, admission: Admission) {
        self.admission = Some(admission);
    }

    /// The model the client named, cut to the contract's bound: it is client text, and an
    /// unbounded one would make every usage report that carries it too big to deliver.
    pub fn requested(&mut self, model: &str, stream: bool) {
        if let Some(event) = self.event.as_mut() {
            event.requested_model = client_text(model, MAX_REQUESTED_MODEL_BYTES);
            event.stream = stream;
        }
    }

    /// Fixes the model, provider and the price version in force when the request started.
    pub fn routed(&mut self, route: &ModelRoute) {
        if let Some(event) = self.event.as_mut() {
            event.model = route.name.clone();
            event.provider = route.provider_name.clone();
            self.price = route.prices.at(event.event_time_unix_ms).copied();
        }
        self.upstream_model = route.upstream_model.clone();
    }

    pub fn prompt_counted(&mut self, tokens: u64) {
        self.prompt_tokens = tokens;
    }

    /// From here on the provider may bill us, so an early end is billed for the prompt.
    pub fn upstream_called(&mut self) {
        self.upstream_called = true;
    }

    pub fn stream_content(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.first_output_at.get_or_insert_with(Instant::now);
        // Counted per chunk: upstreams stream about one token per chunk, and this keeps memory
        // flat however long the stream runs.
        self.counted_output_tokens += self.counter.count_text(&self.upstream_model, text);
    }

    pub fn stream_usage(&mut self, usage: &Usage) {
        self.provider_usage = Some(token_usage(usage));
    }

    /// Records a request that failed; returns the error for the response.
    pub fn fail(&mut self, err: GatewayError) -> GatewayError {
        let status = match &err {
            GatewayError::Provider(ProviderError::Timeout { .. }) => UsageStatus::UpstreamTimeout,
            GatewayError::Provider(ProviderError::Unsupported { .. }) => UsageStatus::ClientError,
            GatewayError::Provider(_) => UsageStatus::UpstreamError,
            GatewayError::LimitExceeded(_) => UsageStatus::Rejected,
            _ => UsageStatus::ClientError,
        };
        // An upstream that answered with an error status bills nothing. One that accepted the
        // request and then timed out, broke off or sent garbage may have billed the prompt, so
        // the prompt (our count) is recorded, the same as for a client that hung up then.
        let (usage, source) = match &err {
            GatewayError::Provider(ProviderError::Timeout { phase, .. })
                if *phase != TimeoutPhase::Connect =>
            {
                self.counted()
            }
            GatewayError::Provider(
                ProviderError::InvalidResponse { .. } | ProviderError::StreamInterrupted { .. },
            ) => self.counted(),
            _ => (TokenUsage::default(), UsageSource::None),
        };
        self.finish(status, err.status().as_u16(), usage, source);
        err
    }

    /// Records a completed non-streaming call: the provider's usage wins, else our own count.
    pub fn settle(&mut self, provider_usage: Option<&Usage>, output_text: &str) -> Settlement {
        let (usage, source) = match provider_usage {
            Some(usage) => (token_usage(usage), UsageSource::Provider),
            None => (
                TokenUsage {
                    input_tokens: self.prompt_tokens,
                    cached_input_tokens: 0,
                    output_tokens: self.counter.count_text(&self.upstream_model, output_text),
                },
                UsageSource::Counted,
            ),
        };
        self.finish(UsageStatus::Ok, 200, usage, source)
    }

    /// What a stream that completes now will be billed; used for the final usage chunk.
    pub fn stream_settlement(&self) -> Settlement {
        let (usage, source) = self.stream_usage_so_far();
        self.price_usage(usage, source)
    }

    pub fn settle_stream(&mut self) -> Settlement {
        let (usage, source) = self.stream_usage_so_far();
        self.finish(UsageStatus::Ok, 200, usage, source)
    }

    /// A stream broke after the response started: billed for what was produced.
    pub fn stream_failed(&mut self, err: &ProviderError) {
        let status = match err {
            ProviderError::Timeout { .. } => UsageStatus::UpstreamTimeout,
            _ => UsageStatus::UpstreamError,
        };
        let (usage, source) = self.stream_usage_so_far();
        self.finish(status, 200, usage, source);
    }

    fn stream_usage_so_far(&self) -> (TokenUsage, UsageSource) {
        match self.provider_usage {
            Some(usage) => (usage, UsageSource::Provider),
            None => self.counted(),
        }
    }

    fn counted(&self) -> (TokenUsage, UsageSource) {
        if !self.upstream_called {
            return (TokenUsage::default(), UsageSource::None);
        }
        let usage = TokenUsage {
            input_tokens: self.prompt_tokens,
            cached_input_tokens: 0,
            output_tokens: self.counted_output_tokens,
        };
        (usage, UsageSource::Counted)
    }

    fn price_usage(&self, usage: TokenUsage, source: UsageSource) -> Settlement {
        Settlement {
            usage,
            cost_micros: self.price.map(|price| price.cost_micros(&usage)),
            price_version: self.price.map(|price| price.version),
            source,
        }
    }

    fn finish(
        &mut self,
        status: UsageStatus,
        http_status: u16,
        usage: TokenUsage,
        source: UsageSource,
    ) -> Settlement {
        let settlement = self.price_usage(usage, source);
        if let Some(mut event) = self.event.take() {
            event.status = status;
            event.http_status = http_status;
            event.input_tokens = usage.input_tokens;
            event.cached_input_tokens = usage.cached_input_tokens;
            event.output_tokens = usage.output_tokens;
            event.cost_micros = settlement.cost_micros;
            event.price_version = settlement.price_version;
            event.usage_source = source;
            event.latency_ms = millis(self.started.elapsed());
            event.ttft_ms = self.first_output_at.map(|at| millis(at - self.started));
            if let Some(admission) = self.admission.take() {
                // Clamped: an absurd provider report must not overflow the counters' sums (and
                // with them every lease claim this edge sends).
                let tokens = usage.input_tokens.saturating_add(usage.output_tokens);
                admission.settle(Demand {
                    tokens: i64::try_from(tokens.min(MAX_SETTLED_UNITS)).unwrap_or(0),
                    cost_micros: settlement
                        .cost_micros
                        .unwrap_or(0)
                        .clamp(0, MAX_SETTLED_UNITS as i64),
                });
            }
            self.sink.record(event);
        }
        settlement
    }
}

impl Drop for RequestMeter {
    fn drop(&mut self) {
        if self.event.is_some() {
            let (usage, source) = self.stream_usage_so_far();
            self.finish(
                UsageStatus::ClientDisconnected,
                CLIENT_CLOSED_REQUEST,
                usage,
                source,
            );
        }
    }
}

fn millis(duration: std::time::Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// Provider usage in billing terms, including OpenAI's cached prompt tokens.
fn token_usage(usage: &Usage) -> TokenUsage {
    let cached = usage
        .extra
        .get("prompt_tokens_details")
        .and_then(|details| details.get("cached_tokens"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    TokenUsage {
        input_tokens: usage.prompt_tokens,
        cached_input_tokens: cached.min(usage.prompt_tokens),
        output_tokens: usage.completion_tokens,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::snapshot::Snapshot;
    use crate::config::snapshot::tests::{first_key, wire_snapshot};

    /// The usage event recorded when a request that reached the upstream fails with `err`.
    fn failed_after_call(err: ProviderError) -> UsageEvent {
        let (sender, events) = std::sync::mpsc::sync_channel(4);
        let context = MeterContext {
            sink: UsageSink::from_sender(sender),
            counter: TokenCounter::new(),
            edge_id: "edge".into(),
        };
        let snapshot = Snapshot::try_from(wire_snapshot()).unwrap();
        let mut meter = RequestMeter::start(&context, &first_key(&snapshot), "req", 1);
        meter.prompt_counted(42);
        meter.upstream_called();
        meter.fail(GatewayError::Provider(err));
        drop(meter);
        let event = events.try_recv().unwrap();
        assert!(events.try_recv().is_err(), "exactly one event");
        event
    }

    #[test]
    fn a_call_that_failed_after_the_upstream_took_it_bills_the_prompt() {
        let timeout = |phase| ProviderError::Timeout {
            provider: "p".into(),
            phase,
            after_ms: 1,
        };
        let first_token = failed_after_call(timeout(TimeoutPhase::FirstToken));
        assert_eq!(
            (first_token.input_tokens, first_token.status),
            (42, UsageStatus::UpstreamTimeout)
        );
        let garbage = failed_after_call(ProviderError::InvalidResponse {
            provider: "p".into(),
            reason: "x".into(),
        });
        assert_eq!(garbage.input_tokens, 42);
        // Never connected, or refused with an error status: the upstream billed nothing.
        assert_eq!(
            failed_after_call(timeout(TimeoutPhase::Connect)).input_tokens,
            0
        );
        let refused = failed_after_call(ProviderError::UpstreamStatus {
            provider: "p".into(),
            status: 500,
            message: "x".into(),
            retry_after_secs: None,
        });
        assert_eq!(
            (refused.input_tokens, refused.usage_source),
            (0, UsageSource::None)
        );
    }
}
