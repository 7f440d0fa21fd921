//! The wire formats clients speak: OpenAI's (chat, embeddings, models) and Anthropic's Messages
//! API. Requests are parsed into these types once at the boundary; unknown fields are kept and
//! passed through.

pub mod chat;
pub mod embeddings;
mod fields;
pub mod json;
pub mod messages;
pub mod models;
