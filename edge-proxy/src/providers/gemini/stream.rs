//! `streamGenerateContent?alt=sse` to OpenAI chunks. Each SSE event is a whole
//! `GenerateContentResponse` carrying the next piece of each candidate. Text streams as content
//! deltas; Gemini sends each function call whole, and it goes out the way OpenAI streams a
//! call: a delta naming it (arguments "") followed by one with all its arguments. Usage is
//! cumulative in every event, so the latest counts are kept and sent once, as the usage-only
//! chunk, when the body ends. Gemini has no end marker: a close after every candidate reported
//! its `finishReason` is the normal end, any other close is a cut.

use super::response::{arguments, completion_id, finish_reason, now_unix, tool_call_id, usage};
use super::wire::{GenerateContentResponse, UsageMetadata};
use crate::api::chat::{ChatCompletionChunk, ChunkChoice, Delta};
use crate::providers::sse::SseEvent;
use crate::providers::transport::{Flow, StreamTranslator, event_json};
use serde_json::{Map, Value, json};

/// One stream's translation state. Chunk `id`, `model` and `created` are fixed by the first
/// event and stay constant.
#[derive(Debug)]
pub struct GeminiChunks {
    id: Option<String>,
    model: String,
    created: i64,
    candidates: Vec<CandidateState>,
    usage: Option<UsageMetadata>,
}

#[derive(Debug)]
struct CandidateState {
    index: u32,
    role_sent: bool,
    tool_calls: usize,
    finished: bool,
}

impl GeminiChunks {
    /// `upstream_model` names the chunks until Gemini reports its `modelVersion`.
    pub fn new(upstream_model: &str) -> Self {
        Self {
            id: None,
            model: upstream_model.to_owned(),
            created: now_unix(),
            candidates: Vec::new(),
            usage: None,
        }
    }

    fn state(&mut self, index: u32) -> &mut CandidateState {
        let position = match self
            .candidates
            .iter()
            .position(|state| state.index == index)
        {
            Some(position) => position,
            None => {
                self.candidates.push(CandidateState {
                    index,
                    role_sent: false,
                    tool_calls: 0,
                    finished: false,
                });
                self.candidates.len() - 1
            }
        };
        &mut self.candidates[position]
    }

    /// A chunk for candidate `index`; the first one of each candidate carries the role.
    fn chunk(&mut self, index: u32, mut delta: Delta, finish: Option<&str>) -> ChatCompletionChunk {
        let state = self.state(index);
        if !state.role_sent {
            state.role_sent = true;
            delta.role = Some("assistant".to_owned());
        }
        ChatCompletionChunk {
            id: self.id.clone().unwrap_or_default(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index,
                delta,
                finish_reason: finish.map(str::to_owned),
                logprobs: None,
                extra: Map::new(),
            }],
            usage: None,
            extra: Map::new(),
        }
    }

    fn text(&mut self, index: u32, text: String, out: &mut Vec<ChatCompletionChunk>) {
        let delta = Delta {
            content: Some(text),
            ..Delta::default()
        };
        out.push(self.chunk(index, delta, None));
    }
}

/// A delta carrying one entry of OpenAI's `tool_calls`.
fn tool_call_delta(call: Value) -> Delta {
    let mut extra = Map::new();
    extra.insert("tool_calls".to_owned(), Value::Array(vec![call]));
    Delta {
        extra,
        ..Delta::default()
    }
}

impl StreamTranslator for GeminiChunks {
    fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<Flow, String> {
        if event.data.trim().is_empty() {
            return Ok(Flow::Continue);
        }
        let response: GenerateContentResponse = event_json(event)?;
        if let Some(error) = response.error {
            return Err(if error.message.is_empty() {
                format!("the upstream reported {} ({})", error.status, error.code)
            } else {
                error.message
            });
        }
        if self.id.is_none() {
            self.id = Some(completion_id(response.response_id.as_deref()));
            if let Some(model) = response.model_version {
                self.model = model;
            }
        }
        if response.usage_metadata.is_some() {
            self.usage = response.usage_metadata;
        }
        let blocked = response
            .prompt_feedback
            .is_some_and(|feedback| feedback.block_reason.is_some());
        if blocked && response.candidates.is_empty() && !self.state(0).finished {
            self.state(0).finished = true;
            out.push(self.chunk(0, Delta::default(), Some("content_filter")));
        }
        for candidate in response.candidates {
            let index = candidate.index;
            if self.state(index).finished {
                continue;
            }
            // Text runs are sent as one delta; a function call flushes the text before it so
            // the order of parts is kept.
            let mut text: Option<String> = None;
            for part in candidate
                .content
                .into_iter()
                .flat_map(|content| content.parts)
            {
                if part.thought {
                    continue;
                }
                if let Some(piece) = part.text.filter(|piece| !piece.is_empty()) {
                    match &mut text {
                        Some(text) => text.push_str(&piece),
                        None => text = Some(piece),
                    }
                }
                if let Some(call) = part.function_call {
                    if let Some(text) = text.take() {
                        self.text(index, text, out);
                    }
                    let position = self.state(index).tool_calls;
                    self.state(index).tool_calls += 1;
                    let id = tool_call_id(&call, position);
                    let args = arguments(&call);
                    let opening = tool_call_delta(json!({
                            "index": position,
                            "id": id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                    }));
                    out.push(self.chunk(index, opening, None));
                    let arguments = tool_call_delta(
                        json!({"index": position, "function": {"arguments": args}}),
                    );
                    out.push(self.chunk(index, arguments, None));
                }
            }
            if let Some(text) = text {
                self.text(index, text, out);
            }
            if let Some(reason) = candidate.finish_reason {
                let state = self.state(index);
                state.finished = true;
                let finish = finish_reason(&reason, state.tool_calls > 0);
                out.push(self.chunk(index, Delta::default(), Some(finish)));
            }
        }
        Ok(Flow::Continue)
    }

    fn on_close(&mut self, out: &mut Vec<ChatCompletionChunk>) -> Result<(), String> {
        if self.candidates.is_empty() {
            return Err("the upstream closed the stream before sending a candidate".to_owned());
        }
        if self.candidates.iter().any(|state| !state.finished) {
            return Err("the upstream closed the stream before its finishReason".to_owned());
        }
        if let Some(metadata) = &self.usage {
            out.push(ChatCompletionChunk {
                id: self.id.clone().unwrap_or_default(),
                object: "chat.completion.chunk".to_owned(),
                created: self.created,
                model: self.model.clone(),
                choices: Vec::new(),
                usage: Some(usage(metadata)),
                extra: Map::new(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn feed(translator: &mut GeminiChunks, data: Value) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        let event = SseEvent {
            event: None,
            data: data.to_string(),
        };
        translator.on_event(&event, &mut out)?;
        Ok(out
            .into_iter()
            .map(|chunk| serde_json::to_value(chunk).unwrap())
            .collect())
    }

    fn close(translator: &mut GeminiChunks) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        translator.on_close(&mut out)?;
        Ok(out
            .into_iter()
            .map(|chunk| serde_json::to_value(chunk).unwrap())
            .collect())
    }

    #[test]
    fn an_error_inside_the_stream_ends_it_with_its_message() {
        let mut translator = GeminiChunks::new("gemini-2.5-flash");
        let err = feed(
            &mut translator,
            json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}),
        )
        .unwrap_err();
        assert_eq!(err, "The model is overloaded.");
        let mut translator = GeminiChunks::new("gemini-2.5-flash");
        let err = SseEvent {
            event: None,
            data: "{not json".to_owned(),
        };
        assert!(translator.on_event(&err, &mut Vec::new()).is_err());
    }

    #[test]
    fn a_blocked_prompt_ends_normally_with_content_filter() {
        let mut translator = GeminiChunks::new("gemini-2.5-flash");
        let chunks = feed(
            &mut translator,
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                   "usageMetadata": {"promptTokenCount": 7}}),
        )
        .unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[0]["choices"][0]["finish_reason"], "content_filter");
        let end = close(&mut translator).unwrap();
        assert_eq!(end[0]["choices"], json!([]));
        assert_eq!(end[0]["usage"]["prompt_tokens"], 7);
    }

    #[test]
    fn every_candidate_must_finish_and_ids_stay_constant() {
        let mut translator = GeminiChunks::new("gemini-2.5-flash");
        let first = feed(
            &mut translator,
            json!({"candidates": [
                {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP"},
                {"content": {"parts": [{"text": "B"}]}, "index": 1}
            ]}),
        )
        .unwrap();
        assert_eq!(first.len(), 3);
        assert!(first.iter().all(|chunk| chunk["id"] == first[0]["id"]));
        assert_eq!(first[2]["choices"][0]["index"], 1);
        assert_eq!(first[2]["choices"][0]["delta"]["role"], "assistant");
        assert!(close(&mut translator).is_err());
        let last = feed(
            &mut translator,
            json!({"candidates": [{"content": {"parts": [{"text": "C"}]}, "finishReason": "MAX_TOKENS", "index": 1}],
                   "responseId": "late"}),
        )
        .unwrap();
        assert_eq!(last[0]["id"], first[0]["id"]);
        assert!(last[0]["choices"][0]["delta"].get("role").is_none());
        assert_eq!(last[1]["choices"][0]["finish_reason"], "length");
        // No usage was reported: the end carries none (the edge counts instead).
        assert_eq!(close(&mut translator).unwrap().len(), 0);
    }

    #[test]
    fn an_empty_body_is_a_cut() {
        assert!(close(&mut GeminiChunks::new("m")).is_err());
    }
}
