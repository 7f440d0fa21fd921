//! The usage event's vocabulary and bounds: how a request ended, where its token counts came
//! from, how long each text field may be, and how big a report may get. The edge bounds what
//! it records with these; the plane validates what it stores with the same numbers, so an event
//! the edge writes is never one the plane must refuse for its size.

use serde::{Deserialize, Serialize};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageStatus {
    Ok,
    ClientError,
    UpstreamError,
    UpstreamTimeout,
    ClientDisconnected,
    /// Refused by the gateway itself (limits, guardrails) after authentication.
    Rejected,
}

impl UsageStatus {
    pub const ALL: [UsageStatus; 6] = [
        Self::Ok,
        Self::ClientError,
        Self::UpstreamError,
        Self::UpstreamTimeout,
        Self::ClientDisconnected,
        Self::Rejected,
    ];

    /// The spelling on the wire and in `usage_events.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ClientError => "client_error",
            Self::UpstreamError => "upstream_error",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::ClientDisconnected => "client_disconnected",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// Where the token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// The provider reported usage; it always wins.
    Provider,
    /// The edge counted tokens itself (no provider usage, or a stream that ended early).
    Counted,
    /// No upstream call consumed tokens.
    None,
}

impl UsageSource {
    pub const ALL: [UsageSource; 3] = [Self::Provider, Self::Counted, Self::None];

    /// The spelling on the wire and in `usage_events.usage_source`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Counted => "counted",
            Self::None => "none",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|source| source.as_str() == value)
    }
}

/// Longest `requested_model` kept, in bytes: it is whatever the client typed, so it is cut to
/// this, never refused (the request still happened and is billed).
pub const MAX_REQUESTED_MODEL_BYTES: usize = 256;
/// Longest id the edge mints or carries (request id, edge id), in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Longest model or provider name, in bytes (configured names, bounded by the admin API).
pub const MAX_NAME_BYTES: usize = 256;
/// Longest routing variant label, in bytes.
pub const MAX_VARIANT_BYTES: usize = 64;

/// Most events one `UsageService.Report` may carry.
pub const MAX_EVENTS_PER_BATCH: usize = 10_000;
/// Largest encoded `UsageBatch` the plane decodes.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Size an edge keeps each report under (splitting a spool segment when needed), far below
/// `MAX_BATCH_BYTES` so one report is quick to send, store and retry.
pub const REPORT_TARGET_BYTES: usize = 1024 * 1024;

/// Most bytes of one quarantined record the plane keeps (the rest is cut, its length and digest
/// kept): enough to see what went wrong, bounded whatever the spool holds.
pub const MAX_QUARANTINED_RECORD_BYTES: usize = 64 * 1024;
/// Most records one `UsageService.Quarantine` call may carry.
pub const MAX_QUARANTINED_RECORDS_PER_BATCH: usize = 1_000;
/// Longest quarantine reason kept, in bytes.
pub const MAX_QUARANTINE_REASON_BYTES: usize = 2_000;

/// Text a client chose, made storable: NUL (which Postgres text cannot hold) and other control
/// characters replaced by U+FFFD, then cut at a character boundary to at most `max_bytes`.
/// Only the kept prefix is looked at, however long the input.
pub fn client_text(value: &str, max_bytes: usize) -> String {
    let mut kept = String::with_capacity(value.len().min(max_bytes));
    for c in value.chars() {
        let c = if c.is_control() {
            char::REPLACEMENT_CHARACTER
        } else {
            c
        };
        if kept.len() + c.len_utf8() > max_bytes {
            break;
        }
        kept.push(c);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip() {
        for status in UsageStatus::ALL {
            assert_eq!(UsageStatus::parse(status.as_str()), Some(status));
        }
        for source in UsageSource::ALL {
            assert_eq!(UsageSource::parse(source.as_str()), Some(source));
        }
        assert_eq!(UsageStatus::parse("OK"), None);
    }

    #[test]
    fn client_text_is_cut_at_a_character_boundary_and_made_storable() {
        assert_eq!(client_text("gpt-4o", 256), "gpt-4o");
        assert_eq!(client_text(&"x".repeat(3 << 20), 256).len(), 256);
        // 'é' is two bytes: a cut through it keeps the whole characters before it.
        assert_eq!(client_text("aéb", 2), "a");
        assert_eq!(client_text("a\0b\nc", 256), "a\u{fffd}b\u{fffd}c");
        // A replacement never pushes the result past the bound.
        assert_eq!(client_text(&"\0".repeat(100), 10).len(), 9);
    }
}
