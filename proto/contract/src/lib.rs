//! What the control plane and the edges must agree on beyond the shape of the messages: the
//! names that travel as strings (provider kinds, usage statuses), the limit vocabulary, the
//! bounds on fields a client controls, the rule for which upstream addresses are off limits,
//! how money is written, and the defaults both sides fill in. Each lives here once, so the two
//! sides cannot drift apart; `tollgate-proto` stays the generated wire types only.

pub mod address;
pub mod limits;
pub mod listen;
pub mod money;
pub mod provider;
pub mod usage;

/// Largest config snapshot an edge decodes. tonic's default of 4 MiB held ~21k keys, past which
/// snapshots (and with them revocations and price changes) silently stopped reaching edges; a
/// whole snapshot is about 200 bytes a key, so this holds about 2.5M keys.
pub const MAX_SNAPSHOT_BYTES: usize = 512 * 1024 * 1024;
/// Largest lease answer an edge decodes (it grows with the limits this edge enforces).
pub const MAX_LEASE_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Output cap assumed for a model that configures none, for worst-case reservations.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 4096;
