//! The OpenAI wire format, as clients and OpenAI-compatible upstreams speak it. Requests are
//! parsed into these types once at the boundary; unknown fields are kept and passed through.

pub mod chat;
mod fields;
pub mod models;
