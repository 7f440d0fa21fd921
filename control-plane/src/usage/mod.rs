//! The usage ledger's ingest side: edges report batches of usage events (`service`), which are
//! validated at the boundary (`event`, `batch`) and stored idempotently with their hourly
//! rollups (`ingest`, aggregated in `rollup`; a large batch as two parallel transactions) into
//! month partitions kept ahead of time (`partitions`); records an edge cannot report as events
//! are kept aside (`quarantine`).

pub mod batch;
pub mod event;
pub mod ingest;
pub mod partitions;
pub mod quarantine;
pub mod rollup;
pub mod service;

pub use batch::{MAX_EVENTS_PER_BATCH, RejectedEvent, UsageBatch};
pub use event::{AppliedPrice, InvalidEvent, UsageEvent, UsageSource, UsageStatus};
pub use ingest::{IngestOutcome, ingest};
pub use service::UsageIngestService;
