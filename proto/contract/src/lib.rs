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

/// Output cap assumed for a model that configures none, for worst-case reservations.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 4096;
