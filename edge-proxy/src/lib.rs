//! Tollgate edge proxy: the OpenAI-compatible HTTP gateway. It serves requests from an immutable
//! `Runtime` compiled from the control plane's config snapshot (or a local TOML file) and
//! swapped atomically, so the hot path never waits on the control plane.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod http;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod pricing;
pub mod providers;
pub mod routing;
pub mod tokens;
pub mod usage;
