//! Usage accounting on the edge: every authenticated request yields exactly one usage event,
//! built by a `RequestMeter`, appended to a local disk spool, and reported to the control plane
//! in batches that are deleted only after the plane acknowledged them.

pub mod event;
pub mod meter;
pub mod reporter;
pub mod segment;
pub mod spool;

pub use event::{UsageEvent, UsageSource, UsageStatus};
pub use meter::{RequestMeter, Settlement};
pub use spool::{SpoolConfig, SpoolFullPolicy, SpoolState, UsageSink};
