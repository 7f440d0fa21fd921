//! The usage event as the edge records it. It is also the spool's line format (JSON), so a
//! spool file is readable with `jq` when someone needs to look.

use serde::{Deserialize, Serialize};
use tollgate_proto::v1 as pb;

use tollgate_contract::usage::{MAX_REQUESTED_MODEL_BYTES, client_text};
pub use tollgate_contract::usage::{UsageSource, UsageStatus};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    pub event_id: String,
    pub request_id: String,
    pub event_time_unix_ms: i64,
    pub org_id: String,
    pub team_id: String,
    pub project_id: String,
    pub user_id: Option<String>,
    pub key_id: String,
    pub requested_model: String,
    pub model: String,
    pub provider: String,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    /// `None` when the model has no price: unpriced, not free.
    pub cost_micros: Option<i64>,
    pub price_version: Option<u32>,
    pub saved_cost_micros: i64,
    pub latency_ms: u32,
    pub ttft_ms: Option<u32>,
    pub status: UsageStatus,
    pub http_status: u16,
    pub cache_hit: bool,
    pub fallback_level: u32,
    pub variant: Option<String>,
    pub edge_id: String,
    pub config_version: u64,
    pub stream: bool,
    pub usage_source: UsageSource,
}

impl From<UsageEvent> for pb::UsageEvent {
    fn from(event: UsageEvent) -> Self {
        Self {
            event_id: event.event_id,
            request_id: event.request_id,
            event_time_unix_ms: event.event_time_unix_ms,
            org_id: event.org_id,
            team_id: event.team_id,
            project_id: event.project_id,
            user_id: event.user_id.unwrap_or_default(),
            key_id: event.key_id,
            // Bounded again on the way out: a spool written by an older edge may hold names
            // of any length, and one of them must not make its whole report undeliverable.
            requested_model: if event.requested_model.len() > MAX_REQUESTED_MODEL_BYTES {
                client_text(&event.requested_model, MAX_REQUESTED_MODEL_BYTES)
            } else {
                event.requested_model
            },
            model: event.model,
            provider: event.provider,
            input_tokens: event.input_tokens,
            cached_input_tokens: event.cached_input_tokens,
            output_tokens: event.output_tokens,
            priced: event.cost_micros.is_some(),
            cost_micros: event.cost_micros.unwrap_or(0),
            price_version: event.price_version.unwrap_or(0),
            latency_ms: event.latency_ms,
            ttft_ms: event.ttft_ms.unwrap_or(0),
            status: event.status.as_str().to_owned(),
            http_status: u32::from(event.http_status),
            cache_hit: event.cache_hit,
            fallback_level: event.fallback_level,
            variant: event.variant.unwrap_or_default(),
            edge_id: event.edge_id,
            config_version: event.config_version,
            stream: event.stream,
            usage_source: event.usage_source.as_str().to_owned(),
            saved_cost_micros: event.saved_cost_micros,
        }
    }
}
