//! A sealed spool segment as the reporter ships it: its events cut into reports that each stay
//! under the contract's size target, and the lines that do not read as events kept aside (cut
//! to a bounded size, with their length and digest) for the plane's quarantine.

use super::event::UsageEvent;
use prost::Message;
use sha2::{Digest, Sha256};
use std::path::Path;
use tollgate_contract::usage::{
    MAX_EVENTS_PER_BATCH, MAX_QUARANTINED_RECORD_BYTES, MAX_QUARANTINED_RECORDS_PER_BATCH,
    REPORT_TARGET_BYTES,
};
use tollgate_proto::v1 as pb;

/// Bytes a repeated message field adds around each element (tag plus a varint length), at most.
const FIELD_OVERHEAD_BYTES: usize = 6;

/// One event as read from the spool: the wire form to report and its line, kept so the event
/// can be quarantined exactly as it was written if the plane refuses it.
#[derive(Debug, Clone)]
pub struct SpooledEvent {
    pub wire: pb::UsageEvent,
    pub line: Vec<u8>,
}

/// Everything in one segment file.
#[derive(Debug, Default)]
pub struct Segment {
    pub events: Vec<SpooledEvent>,
    /// Lines that are not events (a record torn by an OS crash, bytes from elsewhere), as
    /// records ready for the quarantine.
    pub unreadable: Vec<pb::QuarantinedRecord>,
    /// Size of the file, released from the spool's account once the segment is gone.
    pub bytes: u64,
}

/// Reads a segment; only an I/O error fails it, a bad line never does.
pub fn read(path: &Path) -> std::io::Result<Segment> {
    let text = std::fs::read(path)?;
    let mut segment = Segment {
        bytes: text.len() as u64,
        ..Segment::default()
    };
    for line in text.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        match serde_json::from_slice::<UsageEvent>(line) {
            Ok(event) => segment.events.push(SpooledEvent {
                wire: event.into(),
                line: line.to_vec(),
            }),
            Err(err) => {
                let record = quarantined(line, &format!("not a usage event: {err}"), "");
                segment.unreadable.push(record);
            }
        }
    }
    Ok(segment)
}

/// A spool line as a quarantine record: at most `MAX_QUARANTINED_RECORD_BYTES` of it, with
/// the whole line's length and SHA-256.
pub fn quarantined(line: &[u8], reason: &str, event_id: &str) -> pb::QuarantinedRecord {
    pb::QuarantinedRecord {
        reason: reason.to_owned(),
        raw: line[..line.len().min(MAX_QUARANTINED_RECORD_BYTES)].to_vec(),
        raw_len: line.len() as u64,
        raw_sha256: Sha256::digest(line).to_vec(),
        event_id: event_id.to_owned(),
    }
}

/// The events cut into consecutive reports, each at most `MAX_EVENTS_PER_BATCH` events and
/// about `REPORT_TARGET_BYTES` encoded (an event larger than that on its own goes alone).
pub fn reports(events: &[SpooledEvent]) -> Vec<&[SpooledEvent]> {
    split(events, MAX_EVENTS_PER_BATCH, REPORT_TARGET_BYTES, |event| {
        event.wire.encoded_len()
    })
}

/// Quarantine records cut into calls the plane accepts.
pub fn quarantine_batches(records: &[pb::QuarantinedRecord]) -> Vec<&[pb::QuarantinedRecord]> {
    split(
        records,
        MAX_QUARANTINED_RECORDS_PER_BATCH,
        REPORT_TARGET_BYTES,
        Message::encoded_len,
    )
}

fn split<T>(
    items: &[T],
    max_items: usize,
    target_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<&[T]> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, item) in items.iter().enumerate() {
        let item_bytes = size(item) + FIELD_OVERHEAD_BYTES;
        let count = index - start;
        if count > 0 && (count == max_items || bytes + item_bytes > target_bytes) {
            parts.push(&items[start..index]);
            start = index;
            bytes = 0;
        }
        bytes += item_bytes;
    }
    if start < items.len() {
        parts.push(&items[start..]);
    }
    parts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::usage::spool::tests::event;

    fn spooled(id: &str, model_bytes: usize) -> SpooledEvent {
        let mut event = event(id);
        event.requested_model = "m".repeat(model_bytes);
        SpooledEvent {
            line: serde_json::to_vec(&event).unwrap(),
            wire: event.into(),
        }
    }

    #[test]
    fn reports_stay_under_the_target_and_keep_every_event_in_order() {
        // Each event is ~300 bytes on the wire (its model name cut to 256 bytes).
        let events: Vec<SpooledEvent> = (0..20_000)
            .map(|i| spooled(&i.to_string(), 1_000))
            .collect();
        let parts = reports(&events);
        assert!(parts.len() >= 3, "{}", parts.len());
        let mut seen = 0;
        for part in &parts {
            let batch = pb::UsageBatch {
                events: part.iter().map(|event| event.wire.clone()).collect(),
                ..pb::UsageBatch::default()
            };
            assert!(batch.encoded_len() <= REPORT_TARGET_BYTES + 64);
            assert!(part.len() <= MAX_EVENTS_PER_BATCH);
            assert_eq!(part[0].wire.event_id, seen.to_string());
            seen += part.len();
        }
        assert_eq!(seen, events.len());
        assert!(reports(&[]).is_empty());
    }

    #[test]
    fn lines_that_are_not_events_become_bounded_quarantine_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000001.jsonl");
        let good = serde_json::to_vec(&event("good")).unwrap();
        let torn = &good[..good.len() / 2];
        let huge = vec![b'x'; MAX_QUARANTINED_RECORD_BYTES * 3];
        let mut file = good.clone();
        for line in [torn, huge.as_slice()] {
            file.push(b'\n');
            file.extend_from_slice(line);
        }
        std::fs::write(&path, &file).unwrap();
        let segment = read(&path).unwrap();
        assert_eq!(segment.events.len(), 1);
        assert_eq!(segment.bytes, file.len() as u64);
        let [torn_record, huge_record] = segment.unreadable.as_slice() else {
            panic!("{:?}", segment.unreadable.len());
        };
        assert_eq!(torn_record.raw, torn);
        assert!(torn_record.reason.starts_with("not a usage event"));
        assert_eq!(huge_record.raw.len(), MAX_QUARANTINED_RECORD_BYTES);
        assert_eq!(huge_record.raw_len, huge.len() as u64);
        assert_eq!(huge_record.raw_sha256, Sha256::digest(&huge).to_vec());
    }
}
