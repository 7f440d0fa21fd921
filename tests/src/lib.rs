//! End-to-end harness for Tollgate: real `tollgate-cp`, `tollgate-edge` and `tollgatectl`
//! processes against a fresh Postgres database per test, plus a scriptable fake provider that
//! speaks OpenAI's, Azure OpenAI's, Anthropic's and Gemini's wire formats.
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

pub mod anthropic_api;
pub mod control_plane;
pub mod db;
pub mod edge;
pub mod embeddings_api;
pub mod eventually;
pub mod fake_edge;
pub mod fake_provider;
pub mod gateway_client;
pub mod ledger;
pub mod limits;
pub mod load;
pub mod metrics;
pub mod ports;
pub mod process;
pub mod stack;
pub mod tls;
pub mod webhook;

pub use anthropic_api::{
    ANTHROPIC_VERSION, AnthropicEvent, AnthropicStream, assert_anthropic_error, messages_body,
};
pub use control_plane::{ControlPlane, CreatedKey, CtlOutput, EdgeList, EdgeStatus, SeedDemo};
pub use db::TestDb;
pub use edge::Edge;
pub use embeddings_api::{decode_base64_floats, embedding_vectors, embeddings_body};
pub use eventually::{Outcome, eventually};
pub use fake_provider::{
    Behavior, Disconnect, FAKE_COMPLETION_TOKENS, FAKE_CONTENT, FAKE_EMBEDDING_DIMENSIONS,
    FAKE_PROMPT_TOKENS, FAKE_TOOL_ARGUMENTS, FAKE_TOOL_CALL_TOKENS, FakeProvider, RecordedRequest,
    WireFormat, fake_embedding,
};
pub use gateway_client::{
    GatewayClient, HttpReply, OpenStream, SseReply, TokenUsage, assert_chat_completion,
    assert_chat_stream, chat_body, http_client,
};
pub use ledger::{DELIVERY_TIMEOUT, UsageRow, cost_micros, usage_rows, wait_for_usage};
pub use limits::{
    LimitScope, LimitStack, LimitStatus, LimitUse, RateLimitHeaders, StackLayout, Tenant,
    assert_limit_rejection,
};
pub use load::{LoadPlan, LoadReply, LoadReport, run_load};
pub use metrics::Metrics;
pub use ports::{free_port, refusing_port};
pub use stack::{
    FAKE_ANTHROPIC_MODEL, FAKE_API_KEY, FAKE_AZURE_DEPLOYMENT, FAKE_GEMINI_MODEL,
    FAKE_INPUT_PRICE_MICROS, FAKE_OUTPUT_PRICE_MICROS, FAKE_UPSTREAM_MODEL, Stack,
    fake_embedding_model, fake_upstream_model,
};
pub use webhook::{ReceivedWebhook, WebhookReceiver};

use std::time::Duration;

/// How long a freshly spawned process gets to start listening.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a config change gets to reach an edge in tests that do not measure propagation.
pub const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(10);
