//! End-to-end harness for Tollgate: real `tollgate-cp`, `tollgate-edge` and `tollgatectl`
//! processes against a fresh Postgres database per test, plus a scriptable fake
//! OpenAI-compatible provider.
//!
//! Every test builds its own world (database, control plane, edges, fake provider) on free
//! ports, so tests run in parallel under cargo-nextest without sharing anything. Waiting is
//! always done with [`eventually`], never with a fixed sleep.
//!
//! The binaries are not built by this crate: run `cargo build --workspace` first (the harness
//! looks for them next to the test executable, or in `TOLLGATE_E2E_BIN_DIR`).
//!
//! Environment knobs:
//! - `TOLLGATE_TEST_DATABASE_URL`: Postgres server to create test databases on
//!   (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! - `TOLLGATE_E2E_KEEP_DB=1`: keep each test database instead of dropping it.
//! - `TOLLGATE_E2E_BIN_DIR`: directory holding the binaries, when not next to the tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod control_plane;
pub mod db;
pub mod edge;
pub mod eventually;
pub mod fake_provider;
pub mod gateway_client;
pub mod limits;
pub mod load;
pub mod metrics;
pub mod ports;
pub mod process;
pub mod stack;
pub mod webhook;

pub use control_plane::{ControlPlane, CreatedKey, CtlOutput, EdgeList, EdgeStatus, SeedDemo};
pub use db::TestDb;
pub use edge::Edge;
pub use eventually::{Outcome, eventually};
pub use fake_provider::{
    Behavior, FAKE_COMPLETION_TOKENS, FAKE_CONTENT, FAKE_PROMPT_TOKENS, FakeProvider,
    RecordedRequest,
};
pub use gateway_client::{
    GatewayClient, HttpReply, OpenStream, SseReply, TokenUsage, assert_chat_completion,
    assert_chat_stream, chat_body, http_client,
};
pub use limits::{
    LimitScope, LimitStack, LimitStatus, LimitUse, RateLimitHeaders, StackLayout, Tenant,
    assert_limit_rejection,
};
pub use load::{LoadPlan, LoadReply, LoadReport, run_load};
pub use metrics::Metrics;
pub use ports::free_port;
pub use stack::{FAKE_API_KEY, FAKE_UPSTREAM_MODEL, Stack};
pub use webhook::{ReceivedWebhook, WebhookReceiver};

use std::time::Duration;

/// How long a freshly spawned process gets to start listening.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a config change gets to reach an edge in tests that do not measure propagation.
pub const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(10);
