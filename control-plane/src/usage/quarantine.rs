//! Records an edge could not report as events (spool lines that do not parse, batches refused as
//! malformed), kept in `usage_rejected_events` beside the events ingest refused. Storing them is
//! what lets the edge delete them and move on: a bad record is set aside for people, never
//! dropped and never in the way of the events behind it.

use super::batch::replace_nul;
use crate::error::AdminError;
use serde_json::{Value, json};
use sqlx::PgPool;
use tollgate_contract::usage::{
    MAX_ID_BYTES, MAX_QUARANTINE_REASON_BYTES, MAX_QUARANTINED_RECORD_BYTES,
    MAX_QUARANTINED_RECORDS_PER_BATCH, client_text,
};
use tollgate_proto::v1 as pb;

/// A quarantine batch checked at the boundary, ready to store.
#[derive(Debug, Clone)]
pub struct QuarantineBatch {
    pub edge_id: String,
    pub batch_id: String,
    pub records: Vec<QuarantinedRecord>,
}

#[derive(Debug, Clone)]
pub struct QuarantinedRecord {
    pub event_id: String,
    pub reason: String,
    /// What is stored: the record itself when it is whole JSON, else its text with its length.
    pub event: Value,
    pub sha256: [u8; 32],
}

impl QuarantineBatch {
    pub fn from_wire(batch: pb::QuarantineBatch) -> Result<Self, AdminError> {
        if batch.records.len() > MAX_QUARANTINED_RECORDS_PER_BATCH {
            return Err(AdminError::invalid(
                "records",
                format!(
                    "{} records in one batch, at most {MAX_QUARANTINED_RECORDS_PER_BATCH} allowed; split it",
                    batch.records.len()
                ),
            ));
        }
        let mut records = Vec::with_capacity(batch.records.len());
        for (index, record) in batch.records.into_iter().enumerate() {
            records.push(QuarantinedRecord::from_wire(index, record)?);
        }
        Ok(Self {
            edge_id: client_text(&batch.edge_id, MAX_ID_BYTES),
            batch_id: client_text(&batch.batch_id, MAX_ID_BYTES),
            records,
        })
    }
}

impl QuarantinedRecord {
    fn from_wire(index: usize, record: pb::QuarantinedRecord) -> Result<Self, AdminError> {
        if record.raw.len() > MAX_QUARANTINED_RECORD_BYTES {
            return Err(AdminError::invalid(
                "records.raw",
                format!(
                    "record {index} holds {} bytes, at most {MAX_QUARANTINED_RECORD_BYTES} allowed; cut it",
                    record.raw.len()
                ),
            ));
        }
        let sha256: [u8; 32] = record.raw_sha256.as_slice().try_into().map_err(|_| {
            AdminError::invalid(
                "records.raw_sha256",
                format!("record {index}: must be 32 bytes"),
            )
        })?;
        let whole = u64::try_from(record.raw.len()).is_ok_and(|len| len == record.raw_len);
        let parsed = whole
            .then(|| serde_json::from_slice::<Value>(&record.raw).ok())
            .flatten();
        let event = match parsed {
            Some(mut value) => {
                replace_nul(&mut value);
                value
            }
            None => json!({
                "raw": client_text(&String::from_utf8_lossy(&record.raw), MAX_QUARANTINED_RECORD_BYTES),
                "raw_bytes": record.raw_len,
                "cut": !whole,
            }),
        };
        Ok(Self {
            event_id: client_text(&record.event_id, MAX_ID_BYTES),
            reason: client_text(
                &format!("quarantined by the edge: {}", record.reason),
                MAX_QUARANTINE_REASON_BYTES,
            ),
            event,
            sha256,
        })
    }
}

/// Stores the batch in one statement; returns how many records were new.
pub async fn store(pool: &PgPool, batch: &QuarantineBatch) -> Result<u32, AdminError> {
    if batch.records.is_empty() {
        return Ok(0);
    }
    let event_ids: Vec<&str> = batch.records.iter().map(|r| r.event_id.as_str()).collect();
    let reasons: Vec<&str> = batch.records.iter().map(|r| r.reason.as_str()).collect();
    let events: Vec<Value> = batch.records.iter().map(|r| r.event.clone()).collect();
    let digests: Vec<&[u8]> = batch.records.iter().map(|r| r.sha256.as_slice()).collect();
    let stored = sqlx::query!(
        r#"INSERT INTO usage_rejected_events (edge_id, batch_id, event_id, reason, event,
                                              event_sha256)
           SELECT $1, $2, event_id, reason, event, event_sha256
           FROM UNNEST($3::text[], $4::text[], $5::jsonb[], $6::bytea[])
                AS r (event_id, reason, event, event_sha256)
           ON CONFLICT (event_sha256) DO NOTHING"#,
        batch.edge_id,
        batch.batch_id,
        &event_ids as &[&str],
        &reasons as &[&str],
        &events,
        &digests as &[&[u8]],
    )
    .execute(pool)
    .await?
    .rows_affected();
    Ok(u32::try_from(stored).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(raw: &[u8], raw_len: u64) -> pb::QuarantinedRecord {
        pb::QuarantinedRecord {
            reason: "torn line".to_owned(),
            raw: raw.to_vec(),
            raw_len,
            raw_sha256: vec![7; 32],
            event_id: String::new(),
        }
    }

    #[test]
    fn whole_json_is_kept_as_json_and_anything_else_as_bounded_text() {
        let batch = QuarantineBatch::from_wire(pb::QuarantineBatch {
            edge_id: "e".to_owned(),
            batch_id: "b".to_owned(),
            records: vec![
                record(br#"{"event_id":"x\u0000"}"#, 22),
                record(b"{\"event_id\":\"to", 5_000_000),
                record(b"\xff\x00garbage", 9),
            ],
        })
        .unwrap();
        assert_eq!(batch.records[0].event["event_id"], "x\u{fffd}");
        assert_eq!(batch.records[1].event["cut"], true);
        assert_eq!(batch.records[1].event["raw_bytes"], 5_000_000);
        assert_eq!(batch.records[2].event["raw"], "\u{fffd}\u{fffd}garbage");
        assert!(
            batch.records[0]
                .reason
                .starts_with("quarantined by the edge: ")
        );
    }

    #[test]
    fn oversized_records_and_bad_digests_are_refused_naming_the_field() {
        let too_big = record(&vec![b'x'; MAX_QUARANTINED_RECORD_BYTES + 1], 1 << 30);
        let mut bad_digest = record(b"{}", 2);
        bad_digest.raw_sha256 = vec![1; 3];
        for (record, field) in [(too_big, "records.raw"), (bad_digest, "records.raw_sha256")] {
            let err = QuarantineBatch::from_wire(pb::QuarantineBatch {
                records: vec![record],
                ..pb::QuarantineBatch::default()
            })
            .unwrap_err();
            assert!(
                matches!(err, AdminError::InvalidArgument { field: f, .. } if f == field),
                "{err}"
            );
        }
    }
}
