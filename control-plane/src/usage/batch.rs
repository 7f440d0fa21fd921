//! A usage batch split at the boundary into the events that will be stored and the events that
//! are kept aside with the reason they were refused. Only a batch that is wrong as a whole (too
//! big, unusable edge or batch id) is refused with an error.

use super::event::{InvalidEvent, UsageEvent};
use crate::error::AdminError;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tollgate_proto::v1 as pb;

/// Most events one `Report` may carry (the contract's bound): it keeps one transaction's size
/// and duration bounded whatever a client sends.
pub use tollgate_contract::usage::MAX_EVENTS_PER_BATCH;
const MAX_BATCH_LABEL_LEN: usize = 128;
/// How much of a refused event's id is kept for lookups (the whole event is in `event`).
const MAX_REJECTED_ID_CHARS: usize = 128;

/// A batch ready for ingest.
#[derive(Debug, Clone)]
pub struct UsageBatch {
    pub edge_id: String,
    pub batch_id: String,
    pub events: Vec<UsageEvent>,
    pub rejected: Vec<RejectedEvent>,
}

/// An event that failed validation, as it will be kept in `usage_rejected_events`.
#[derive(Debug, Clone)]
pub struct RejectedEvent {
    /// The event id as sent (it may be what was wrong).
    pub event_id: String,
    pub reason: InvalidEvent,
    /// The event as JSON text, with NUL characters replaced: JSONB cannot hold them, and a
    /// refused event must never turn into a database error.
    pub event_json: String,
    /// SHA-256 of `event_json`: the same event re-sent is stored once.
    pub event_sha256: [u8; 32],
}

impl UsageBatch {
    /// Validates every event against the clock `now`; see [`UsageEvent::validate`].
    pub fn from_wire(batch: pb::UsageBatch, now: DateTime<Utc>) -> Result<Self, AdminError> {
        if batch.events.len() > MAX_EVENTS_PER_BATCH {
            return Err(AdminError::invalid(
                "events",
                format!(
                    "{} events in one batch, at most {MAX_EVENTS_PER_BATCH} allowed; split it",
                    batch.events.len()
                ),
            ));
        }
        let edge_id = batch_label("edge_id", batch.edge_id)?;
        let batch_id = batch_label("batch_id", batch.batch_id)?;
        let mut events = Vec::with_capacity(batch.events.len());
        let mut rejected = Vec::new();
        for event in batch.events {
            match UsageEvent::validate(&event, now) {
                Ok(valid) => events.push(valid),
                Err(reason) => rejected.push(RejectedEvent::new(&event, reason)),
            }
        }
        Ok(Self {
            edge_id,
            batch_id,
            events,
            rejected,
        })
    }
}

impl RejectedEvent {
    fn new(event: &pb::UsageEvent, reason: InvalidEvent) -> Self {
        let mut json = serde_json::to_value(event).unwrap_or(Value::Null);
        replace_nul(&mut json);
        let event_json = json.to_string();
        Self {
            event_id: event
                .event_id
                .chars()
                .take(MAX_REJECTED_ID_CHARS)
                .map(storable_char)
                .collect(),
            reason,
            event_sha256: Sha256::digest(event_json.as_bytes()).into(),
            event_json,
        }
    }
}

fn batch_label(field: &'static str, value: String) -> Result<String, AdminError> {
    if value.len() > MAX_BATCH_LABEL_LEN || value.chars().any(char::is_control) {
        return Err(AdminError::invalid(
            field,
            format!("must be at most {MAX_BATCH_LABEL_LEN} bytes without control characters"),
        ));
    }
    Ok(value)
}

fn storable_char(c: char) -> char {
    if c == '\0' {
        char::REPLACEMENT_CHARACTER
    } else {
        c
    }
}

/// JSONB cannot hold NUL characters; a refused or quarantined record must never turn into a
/// database error.
pub(crate) fn replace_nul(value: &mut Value) {
    match value {
        Value::String(text) if text.contains('\0') => {
            *text = text.chars().map(storable_char).collect();
        }
        Value::Array(items) => items.iter_mut().for_each(replace_nul),
        Value::Object(fields) => fields.values_mut().for_each(replace_nul),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(event_id: &str) -> pb::UsageEvent {
        pb::UsageEvent {
            event_id: event_id.to_owned(),
            ..pb::UsageEvent::default()
        }
    }

    #[test]
    fn bad_events_are_set_aside_with_storable_json() {
        let batch = pb::UsageBatch {
            edge_id: "edge-1".to_owned(),
            batch_id: "b1".to_owned(),
            events: vec![event("x\0y")],
        };
        let batch = UsageBatch::from_wire(batch, Utc::now()).unwrap();
        assert!(batch.events.is_empty());
        let rejected = &batch.rejected[0];
        assert_eq!(rejected.event_id, "x\u{fffd}y");
        assert!(!rejected.event_json.contains("\\u0000"));
        assert_eq!(rejected.reason.to_string(), "event_id: 'x?y' is not a UUID");
        let again = RejectedEvent::new(&event("x\0y"), rejected.reason.clone());
        assert_eq!(again.event_sha256, rejected.event_sha256);
    }

    #[test]
    fn oversized_batches_are_refused_whole() {
        let batch = pb::UsageBatch {
            events: vec![pb::UsageEvent::default(); MAX_EVENTS_PER_BATCH + 1],
            ..pb::UsageBatch::default()
        };
        let err = UsageBatch::from_wire(batch, Utc::now()).unwrap_err();
        assert!(matches!(
            err,
            AdminError::InvalidArgument {
                field: "events",
                ..
            }
        ));
    }
}
