//! Anthropic's Messages API as clients speak it (`POST /v1/messages`), so tools written for
//! Anthropic's SDKs reach any provider through the gateway. The request is parsed and
//! translated once, here, into the gateway's OpenAI-shaped `ChatCompletionRequest`; the answer
//! (a completion, or a stream of chunks) is translated back into an Anthropic `Message` or
//! Anthropic's stream events. All of it is pure translation: the HTTP handler composes it with
//! the shared chat pipeline.

mod fields;
mod input;
mod request;
mod response;
mod stream;

pub use request::{parse, parse_within};
pub use response::{ContentBlock, Message, MessageUsage, render};
pub use stream::{MessageStream, MessageStreamEvent};
