//! Gemini's `GenerateContentResponse` to OpenAI's chat completion, plus the pieces the stream
//! translator shares: finish reasons, usage, tool-call ids, the completion id.
//!
//! A prompt Gemini blocks outright (`promptFeedback.blockReason`, no candidates) becomes one
//! choice with empty content and `finish_reason: "content_filter"`, as OpenAI reports its own
//! filter: the request was valid and was answered, just not with content.

use super::tool_call_id;
use super::wire::{Candidate, FunctionCall, GenerateContentResponse, UsageMetadata};
use crate::api::chat::{ChatCompletion, Choice, ResponseMessage, Usage};
use serde_json::{Map, Value, json};

/// OpenAI's finish reason for a Gemini one. A candidate that stops after calling functions
/// waits for their results: "tool_calls".
pub fn finish_reason(gemini: &str, has_tool_calls: bool) -> &'static str {
    match gemini {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if has_tool_calls => "tool_calls",
        _ => "stop",
    }
}

/// Gemini's counts in OpenAI's shape: thinking tokens are output (and reported as
/// `reasoning_tokens`), built-in tool prompts are input, cached tokens are part of the prompt.
pub fn usage(metadata: &UsageMetadata) -> Usage {
    let prompt = metadata.prompt_token_count + metadata.tool_use_prompt_token_count;
    let completion = metadata.candidates_token_count + metadata.thoughts_token_count;
    let mut usage = Usage::new(prompt, completion);
    if metadata.cached_content_token_count > 0 {
        usage.extra.insert(
            "prompt_tokens_details".to_owned(),
            json!({ "cached_tokens": metadata.cached_content_token_count }),
        );
    }
    if metadata.thoughts_token_count > 0 {
        usage.extra.insert(
            "completion_tokens_details".to_owned(),
            json!({ "reasoning_tokens": metadata.thoughts_token_count }),
        );
    }
    usage
}

/// The OpenAI id of a function call: the call's own id when Gemini gave one, else `call_<n>`
/// (n counts the candidate's calls), carrying the part's thought signature if it has one.
pub fn tool_call_id(call: &FunctionCall, signature: Option<&str>, position: usize) -> String {
    let base = call
        .id
        .clone()
        .unwrap_or_else(|| format!("call_{position}"));
    tool_call_id::encode(&base, signature)
}

/// The call's arguments as the JSON text OpenAI carries.
pub fn arguments(call: &FunctionCall) -> String {
    call.args
        .as_ref()
        .map_or_else(|| "{}".to_owned(), Value::to_string)
}

/// `chatcmpl-<responseId>`, or a fresh id when Gemini sent none.
pub fn completion_id(response_id: Option<&str>) -> String {
    match response_id {
        Some(id) => format!("chatcmpl-{id}"),
        None => format!("chatcmpl-{}", crate::ids::random_uuid().simple()),
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(0))
}

/// The whole answer. `Err` (the reason) when Gemini sent neither a candidate nor a block
/// reason.
pub fn completion(
    response: GenerateContentResponse,
    upstream_model: &str,
) -> Result<ChatCompletion, String> {
    let blocked = response.candidates.is_empty()
        && response
            .prompt_feedback
            .as_ref()
            .is_some_and(|feedback| feedback.block_reason.is_some());
    if response.candidates.is_empty() && !blocked {
        return Err("the response has no candidates".to_owned());
    }
    let choices = if blocked {
        vec![choice(0, Some(String::new()), Vec::new(), "content_filter")]
    } else {
        response
            .candidates
            .into_iter()
            .map(candidate_choice)
            .collect()
    };
    Ok(ChatCompletion {
        id: completion_id(response.response_id.as_deref()),
        object: "chat.completion".to_owned(),
        created: now_unix(),
        model: response
            .model_version
            .unwrap_or_else(|| upstream_model.to_owned()),
        choices,
        usage: response.usage_metadata.as_ref().map(usage),
        extra: Map::new(),
    })
}

fn candidate_choice(candidate: Candidate) -> Choice {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for part in candidate
        .content
        .into_iter()
        .flat_map(|content| content.parts)
    {
        if part.thought {
            continue;
        }
        if let Some(piece) = part.text {
            text.push_str(&piece);
        }
        if let Some(call) = part.function_call {
            tool_calls.push(json!({
                "id": tool_call_id(&call, part.thought_signature.as_deref(), tool_calls.len()),
                "type": "function",
                "function": {"name": call.name, "arguments": arguments(&call)},
            }));
        }
    }
    let finish = finish_reason(
        candidate.finish_reason.as_deref().unwrap_or("STOP"),
        !tool_calls.is_empty(),
    );
    // OpenAI's content is null for a turn that only calls tools.
    let content = (!text.is_empty() || tool_calls.is_empty()).then_some(text);
    choice(candidate.index, content, tool_calls, finish)
}

fn choice(index: u32, content: Option<String>, tool_calls: Vec<Value>, finish: &str) -> Choice {
    let mut extra = Map::new();
    if !tool_calls.is_empty() {
        extra.insert("tool_calls".to_owned(), Value::Array(tool_calls));
    }
    Choice {
        index,
        message: ResponseMessage {
            role: "assistant".to_owned(),
            content,
            extra,
        },
        finish_reason: Some(finish.to_owned()),
        logprobs: None,
        extra: Map::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn translate(body: Value) -> Result<Value, String> {
        let response: GenerateContentResponse = serde_json::from_value(body).unwrap();
        completion(response, "gemini-2.5-flash").map(|done| serde_json::to_value(done).unwrap())
    }

    #[test]
    fn finish_reasons_use_openai_vocabulary() {
        assert_eq!(finish_reason("STOP", false), "stop");
        assert_eq!(finish_reason("STOP", true), "tool_calls");
        assert_eq!(finish_reason("MAX_TOKENS", true), "length");
        for filtered in [
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
        ] {
            assert_eq!(finish_reason(filtered, false), "content_filter");
        }
        assert_eq!(finish_reason("MALFORMED_FUNCTION_CALL", false), "stop");
        assert_eq!(finish_reason("OTHER", false), "stop");
    }

    #[test]
    fn usage_counts_thoughts_as_output_and_reports_cached_tokens() {
        let usage = usage(&UsageMetadata {
            prompt_token_count: 100,
            cached_content_token_count: 60,
            candidates_token_count: 10,
            tool_use_prompt_token_count: 5,
            thoughts_token_count: 20,
        });
        assert_eq!(
            serde_json::to_value(usage).unwrap(),
            json!({
                "prompt_tokens": 105, "completion_tokens": 30, "total_tokens": 135,
                "prompt_tokens_details": {"cached_tokens": 60},
                "completion_tokens_details": {"reasoning_tokens": 20}
            })
        );
    }

    #[test]
    fn a_blocked_prompt_is_an_empty_content_filter_choice() {
        let done = translate(json!({
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}
        }))
        .unwrap();
        assert_eq!(done["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(done["choices"][0]["message"]["content"], "");
        assert_eq!(done["usage"]["prompt_tokens"], 9);
        assert_eq!(done["model"], "gemini-2.5-flash");
    }

    #[test]
    fn a_signed_call_carries_its_signature_on_gemini_s_own_id() {
        let done = translate(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"id": "fc7", "name": "a", "args": {}}, "thoughtSignature": "ab+/cd=="},
                {"functionCall": {"name": "b", "args": {"x": 1}}}
            ]}, "finishReason": "STOP"}]
        }))
        .unwrap();
        let calls = &done["choices"][0]["message"]["tool_calls"];
        assert_eq!(calls[0]["id"], "fc7~ts~ab-_cd");
        assert_eq!(calls[1]["id"], "call_1");
        assert_eq!(calls[1]["function"]["arguments"], "{\"x\":1}");
        assert_eq!(done["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn a_response_without_candidates_or_block_reason_is_invalid() {
        assert!(translate(json!({"usageMetadata": {"promptTokenCount": 1}})).is_err());
    }

    #[test]
    fn several_candidates_keep_their_index_and_thoughts_are_left_out() {
        let done = translate(json!({
            "candidates": [
                {"content": {"role": "model", "parts": [
                    {"text": "pondering", "thought": true}, {"text": "A"}, {"text": "B"}
                ]}, "finishReason": "STOP"},
                {"content": {"role": "model", "parts": [{"text": "C"}]},
                 "finishReason": "MAX_TOKENS", "index": 1}
            ],
            "responseId": "abc", "modelVersion": "gemini-2.5-flash-001"
        }))
        .unwrap();
        assert_eq!(done["id"], "chatcmpl-abc");
        assert_eq!(done["model"], "gemini-2.5-flash-001");
        assert_eq!(done["choices"][0]["message"]["content"], "AB");
        assert_eq!(done["choices"][1]["index"], 1);
        assert_eq!(done["choices"][1]["finish_reason"], "length");
        assert!(done.get("usage").is_none());
    }
}
