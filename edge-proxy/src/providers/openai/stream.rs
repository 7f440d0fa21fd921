//! OpenAI's stream is already in the gateway's chunk shape: each `data:` is a chunk, `[DONE]`
//! ends it, and a close before `[DONE]` is a cut.

use crate::api::chat::ChatCompletionChunk;
use crate::providers::sse::SseEvent;
use crate::providers::transport::{Flow, StreamTranslator, event_json};

#[derive(Debug, Default)]
pub struct OpenAiChunks;

impl StreamTranslator for OpenAiChunks {
    fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<Flow, String> {
        if event.data == "[DONE]" {
            return Ok(Flow::Done);
        }
        out.push(event_json(event)?);
        Ok(Flow::Continue)
    }

    fn on_close(&mut self, _out: &mut Vec<ChatCompletionChunk>) -> Result<(), String> {
        Err("the upstream closed the stream before [DONE]".to_owned())
    }
}
