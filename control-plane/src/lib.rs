//! Tollgate control plane: owns all configuration in Postgres, serves the admin API, streams
//! versioned config snapshots to edges and ingests their usage reports. Binaries: `tollgate-cp`
//! (server) and `tollgatectl`.

pub mod admin;
pub mod auth;
pub mod config_stream;
pub mod crypto;
pub mod db;
pub mod edge_gate;
pub mod error;
pub mod key_feed;
pub mod limits;
pub mod secrets;
pub mod seed;
pub mod server;
pub mod snapshot;
pub mod usage;
pub mod version_watch;
