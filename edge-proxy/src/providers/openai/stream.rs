//! OpenAI's stream is already in the gateway's chunk shape: each `data:` is a chunk, `[DONE]`
//! ends it, and a close before `[DONE]` is a cut.
//!
//! Azure OpenAI (and servers that copy it) interleave content-filter annotations that are not
//! chunks of the answer and would break the contract that `id`, `model` and `created` are
//! constant per stream: a first event with no choices carrying `prompt_filter_results`, and,
//! with asynchronous filtering, id-less events whose choices have no `delta`. They are dropped,
//! except an annotation that ends a choice (`finish_reason: "content_filter"`), which becomes
//! an ordinary finish chunk under the stream's identity, its filter results kept.

use crate::api::chat::{ChatCompletionChunk, ChunkChoice, Delta};
use crate::providers::sse::SseEvent;
use crate::providers::transport::{Flow, StreamTranslator, event_json};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Default)]
pub struct OpenAiChunks {
    /// The first real chunk's identity, for finish chunks made from annotations.
    identity: Option<Identity>,
}

#[derive(Debug, Clone)]
struct Identity {
    id: String,
    object: String,
    created: i64,
    model: String,
}

/// An Azure content-filter annotation: no `id`, choices without `delta`.
#[derive(Debug, Deserialize)]
struct Annotation {
    #[serde(default)]
    id: String,
    #[serde(default)]
    choices: Vec<AnnotatedChoice>,
}

#[derive(Debug, Deserialize)]
struct AnnotatedChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl StreamTranslator for OpenAiChunks {
    fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<Flow, String> {
        if event.data == "[DONE]" {
            return Ok(Flow::Done);
        }
        match serde_json::from_str::<ChatCompletionChunk>(&event.data) {
            Ok(chunk) if chunk.choices.is_empty() && chunk.usage.is_none() => {}
            Ok(chunk) => {
                if self.identity.is_none() && !chunk.id.is_empty() {
                    self.identity = Some(Identity {
                        id: chunk.id.clone(),
                        object: chunk.object.clone(),
                        created: chunk.created,
                        model: chunk.model.clone(),
                    });
                }
                out.push(chunk);
            }
            Err(_) => match serde_json::from_str::<Annotation>(&event.data) {
                Ok(annotation) if annotation.id.is_empty() && !annotation.choices.is_empty() => {
                    out.extend(self.finish_from(annotation));
                }
                // Not an annotation: the upstream's error message, or why it is unreadable.
                _ => return event_json::<ChatCompletionChunk>(event).map(|_| Flow::Continue),
            },
        }
        Ok(Flow::Continue)
    }

    fn on_close(&mut self, _out: &mut Vec<ChatCompletionChunk>) -> Result<(), String> {
        Err("the upstream closed the stream before [DONE]".to_owned())
    }
}

impl OpenAiChunks {
    /// The finish chunk an annotation carries, if it ends any choice.
    fn finish_from(&self, annotation: Annotation) -> Option<ChatCompletionChunk> {
        let choices: Vec<ChunkChoice> = annotation
            .choices
            .into_iter()
            .filter(|choice| choice.finish_reason.is_some())
            .map(|choice| ChunkChoice {
                index: choice.index,
                delta: Delta::default(),
                finish_reason: choice.finish_reason,
                logprobs: None,
                extra: choice.extra,
            })
            .collect();
        if choices.is_empty() {
            return None;
        }
        let identity = self.identity.clone().unwrap_or(Identity {
            id: String::new(),
            object: "chat.completion.chunk".to_owned(),
            created: 0,
            model: String::new(),
        });
        Some(ChatCompletionChunk {
            id: identity.id,
            object: identity.object,
            created: identity.created,
            model: identity.model,
            choices,
            usage: None,
            extra: Map::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn feed(translator: &mut OpenAiChunks, data: &str) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        translator.on_event(
            &SseEvent {
                event: None,
                data: data.to_owned(),
            },
            &mut out,
        )?;
        Ok(out
            .into_iter()
            .map(|chunk| serde_json::to_value(chunk).unwrap())
            .collect())
    }

    const CHUNK: &str = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#;

    #[test]
    fn prompt_filter_events_without_choices_are_dropped() {
        let mut translator = OpenAiChunks::default();
        let filter = r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{}}]}"#;
        assert!(feed(&mut translator, filter).unwrap().is_empty());
        assert_eq!(feed(&mut translator, CHUNK).unwrap().len(), 1);
    }

    #[test]
    fn an_annotation_ending_a_choice_becomes_a_finish_chunk_of_the_stream() {
        let mut translator = OpenAiChunks::default();
        feed(&mut translator, CHUNK).unwrap();
        let offsets = r#"{"id":"","object":"","created":0,"model":"","choices":[{"index":0,"finish_reason":null,"content_filter_results":{},"content_filter_offsets":{"check_offset":0,"start_offset":0,"end_offset":2}}],"usage":null}"#;
        assert!(feed(&mut translator, offsets).unwrap().is_empty());
        let filtered = r#"{"id":"","object":"","created":0,"model":"","choices":[{"index":0,"finish_reason":"content_filter","content_filter_results":{"violence":{"filtered":true,"severity":"medium"}}}]}"#;
        let out = feed(&mut translator, filtered).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["id"], "chatcmpl-1");
        assert_eq!(out[0]["model"], "gpt-4o");
        assert_eq!(out[0]["created"], 7);
        assert_eq!(out[0]["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(out[0]["choices"][0]["delta"], serde_json::json!({}));
        assert_eq!(
            out[0]["choices"][0]["content_filter_results"]["violence"]["filtered"],
            true
        );
    }

    #[test]
    fn unreadable_events_and_upstream_errors_end_the_stream_with_the_reason() {
        let mut translator = OpenAiChunks::default();
        let err = feed(&mut translator, r#"{"id":"chatcmpl-1","choices":[{"#).unwrap_err();
        assert!(err.starts_with("unparseable event"), "{err}");
        let err = feed(
            &mut translator,
            r#"{"error":{"message":"The server had an error","type":"server_error"}}"#,
        )
        .unwrap_err();
        assert_eq!(err, "The server had an error");
    }
}
