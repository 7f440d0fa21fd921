//! OpenAI's chat request to Gemini's `GenerateContentRequest`. Messages become contents:
//! system and developer messages join the one `systemInstruction` (wherever they stand),
//! user messages are "user" turns, assistant messages "model" turns with `functionCall` parts,
//! and tool results "user" turns with `functionResponse` parts named after the call they answer.
//! Consecutive turns of one role are merged, as Gemini expects alternating turns.

use super::params;
use super::unsupported;
use super::wire::{Blob, Content, FunctionCall, FunctionResponse, GenerateContentRequest, Part};
use crate::api::chat::{ChatCompletionRequest, ChatMessage, MessageContent, Role};
use crate::providers::ProviderError;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;

pub fn generate_content_request(
    request: &ChatCompletionRequest,
) -> Result<GenerateContentRequest, ProviderError> {
    let params = params::translate(request)?;
    let Conversation { system, contents } = conversation(&request.messages)?;
    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(Content {
            role: None,
            parts: system,
        }),
        tools: params.tools,
        tool_config: params.tool_config,
        generation_config: params.generation_config,
    })
}

struct Conversation {
    system: Vec<Part>,
    contents: Vec<Content>,
}

/// Message fields other than `role` and `content`, by role; anything else (such as `name`,
/// which Gemini has no place for) is a 400 naming it.
fn allowed_fields(role: Role) -> &'static [&'static str] {
    match role {
        Role::Assistant => &["tool_calls", "refusal"],
        Role::Tool => &["tool_call_id"],
        Role::System | Role::Developer | Role::User | Role::Function => &[],
    }
}

/// Null or an empty list: what SDKs write when they replay an assistant message with nothing in
/// a field (`"annotations": []`, `"audio": null`), which carries nothing to translate.
fn is_empty_field(value: &Value) -> bool {
    value.is_null() || value.as_array().is_some_and(Vec::is_empty)
}

fn conversation(messages: &[ChatMessage]) -> Result<Conversation, ProviderError> {
    let mut system = Vec::new();
    let mut contents: Vec<Content> = Vec::new();
    // tool_call_id → function name, from earlier assistant turns: Gemini matches results to
    // calls by name.
    let mut called: HashMap<&str, &str> = HashMap::new();
    for (index, message) in messages.iter().enumerate() {
        let at = |field: &str| format!("messages[{index}].{field}");
        for (field, value) in &message.extra {
            if !is_empty_field(value) && !allowed_fields(message.role).contains(&field.as_str()) {
                return Err(unsupported(
                    at(field),
                    "this message field has no Gemini equivalent",
                ));
            }
        }
        match message.role {
            Role::System | Role::Developer => {
                system.extend(text_parts(message.content.as_ref(), index, &["text"])?);
            }
            Role::User => push(&mut contents, "user", user_parts(message, index)?),
            Role::Assistant => {
                let mut parts = text_parts(message.content.as_ref(), index, &["text", "refusal"])?;
                if let Some(Value::String(refusal)) = message.extra.get("refusal") {
                    parts.push(Part::text(refusal.clone()));
                }
                if let Some(calls) = message.extra.get("tool_calls").filter(|v| !v.is_null()) {
                    for (position, call) in tool_calls(calls, index)?.into_iter().enumerate() {
                        let args = arguments(call.function.arguments, index, position)?;
                        called.insert(call.id, call.function.name);
                        parts.push(Part {
                            function_call: Some(FunctionCall {
                                id: None,
                                name: call.function.name.to_owned(),
                                args: Some(Value::Object(args)),
                            }),
                            ..Part::default()
                        });
                    }
                }
                push(&mut contents, "model", parts);
            }
            Role::Tool => {
                let id = message
                    .extra
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        unsupported(at("tool_call_id"), "a tool message needs its tool_call_id")
                    })?;
                let name = called.get(id).ok_or_else(|| {
                    unsupported(
                        at("tool_call_id"),
                        format!("no earlier assistant tool call has the id '{id}'"),
                    )
                })?;
                let output: String = text_parts(message.content.as_ref(), index, &["text"])?
                    .into_iter()
                    .filter_map(|part| part.text)
                    .collect();
                let part = Part {
                    function_response: Some(FunctionResponse {
                        name: (*name).to_owned(),
                        response: tool_output(output),
                    }),
                    ..Part::default()
                };
                push(&mut contents, "user", vec![part]);
            }
            Role::Function => {
                return Err(unsupported(
                    at("role"),
                    "the deprecated function role is not translated; use tool messages",
                ));
            }
        }
    }
    Ok(Conversation { system, contents })
}

/// Appends parts as a turn of `role`, merged into the previous turn when it has the same role.
/// A message without parts adds nothing (Gemini rejects empty turns).
fn push(contents: &mut Vec<Content>, role: &'static str, parts: Vec<Part>) {
    if parts.is_empty() {
        return;
    }
    match contents.last_mut() {
        Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
        _ => contents.push(Content {
            role: Some(role.to_owned()),
            parts,
        }),
    }
}

/// Text-only content (system, assistant, tool): a string or parts of the `allowed` types, each
/// of which carries its text under the key named like its type (`text`, `refusal`).
fn text_parts(
    content: Option<&MessageContent>,
    index: usize,
    allowed: &[&str],
) -> Result<Vec<Part>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(text)) => Ok(non_empty(text).into_iter().collect()),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .enumerate()
            .filter_map(|(position, part)| text_part(part, index, position, allowed).transpose())
            .collect(),
    }
}

/// One text-like part; `None` when its text is empty.
fn text_part(
    part: &Value,
    index: usize,
    position: usize,
    allowed: &[&str],
) -> Result<Option<Part>, ProviderError> {
    let kind = part_type(part, index, position)?;
    if !allowed.contains(&kind) {
        return Err(unsupported(
            format!("messages[{index}].content[{position}].type"),
            format!("'{kind}' parts are not accepted in this message"),
        ));
    }
    let text = part.get(kind).and_then(Value::as_str).ok_or_else(|| {
        unsupported(
            format!("messages[{index}].content[{position}].{kind}"),
            "must be a string",
        )
    })?;
    Ok(non_empty(text))
}

fn non_empty(text: &str) -> Option<Part> {
    (!text.is_empty()).then(|| Part::text(text.to_owned()))
}

fn part_type(part: &Value, index: usize, position: usize) -> Result<&str, ProviderError> {
    part.get("type").and_then(Value::as_str).ok_or_else(|| {
        unsupported(
            format!("messages[{index}].content[{position}].type"),
            "every content part needs a type",
        )
    })
}

fn user_parts(message: &ChatMessage, index: usize) -> Result<Vec<Part>, ProviderError> {
    let Some(MessageContent::Parts(parts)) = &message.content else {
        return text_parts(message.content.as_ref(), index, &["text"]);
    };
    let mut out = Vec::with_capacity(parts.len());
    for (position, part) in parts.iter().enumerate() {
        match part_type(part, index, position)? {
            "image_url" => out.push(image(part, index, position)?),
            _ => out.extend(text_part(part, index, position, &["text"])?),
        }
    }
    Ok(out)
}

/// An image part: Gemini takes images inline (or as files uploaded to its Files API, which the
/// gateway does not manage), so only `data:` URLs can be carried. `detail` is a resolution hint
/// with no per-image equivalent and is dropped.
fn image(part: &Value, index: usize, position: usize) -> Result<Part, ProviderError> {
    let param = format!("messages[{index}].content[{position}].image_url.url");
    let url = part
        .pointer("/image_url/url")
        .and_then(Value::as_str)
        .ok_or_else(|| unsupported(param.clone(), "an image part needs its URL"))?;
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(unsupported(
            param,
            "Gemini's API takes images inline or as uploaded files, not by URL; send the image \
             as a base64 data: URL",
        ));
    }
    let (mime_type, data) = url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(','))
        .and_then(|(header, data)| Some((header.strip_suffix(";base64")?, data)))
        .filter(|(mime_type, data)| !mime_type.is_empty() && !data.is_empty())
        .ok_or_else(|| {
            unsupported(
                param,
                "must be a base64 data: URL (data:<mime type>;base64,<data>)",
            )
        })?;
    Ok(Part {
        inline_data: Some(Blob {
            mime_type: mime_type.to_owned(),
            data: data.to_owned(),
        }),
        ..Part::default()
    })
}

#[derive(Deserialize)]
struct ToolCall<'a> {
    #[serde(borrow)]
    id: &'a str,
    #[serde(borrow)]
    function: CalledFunction<'a>,
}

#[derive(Deserialize)]
struct CalledFunction<'a> {
    #[serde(borrow)]
    name: &'a str,
    #[serde(borrow, default)]
    arguments: &'a str,
}

fn tool_calls(value: &Value, index: usize) -> Result<Vec<ToolCall<'_>>, ProviderError> {
    Vec::<ToolCall>::deserialize(value).map_err(|err| {
        unsupported(
            format!("messages[{index}].tool_calls"),
            format!("not valid tool calls: {err}"),
        )
    })
}

/// A call's arguments as the JSON object Gemini's `args` is; an empty string means none.
fn arguments(
    arguments: &str,
    index: usize,
    position: usize,
) -> Result<Map<String, Value>, ProviderError> {
    if arguments.trim().is_empty() {
        return Ok(Map::new());
    }
    let param = || format!("messages[{index}].tool_calls[{position}].function.arguments");
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(args)) => Ok(args),
        Ok(_) => Err(unsupported(param(), "must be a JSON object")),
        Err(err) => Err(unsupported(param(), format!("not valid JSON: {err}"))),
    }
}

/// Gemini wants a function's result as a JSON object: output that is one is passed as it is,
/// anything else is wrapped as `{"content": <text>}`.
fn tool_output(output: String) -> Map<String, Value> {
    if output.trim_start().starts_with('{')
        && let Ok(Value::Object(object)) = serde_json::from_str(&output)
    {
        return object;
    }
    let mut wrapped = Map::new();
    wrapped.insert("content".to_owned(), Value::String(output));
    wrapped
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn translate(messages: Value) -> Result<Value, ProviderError> {
        let body = json!({"model": "m", "messages": messages});
        let request = ChatCompletionRequest::parse(body.to_string().as_bytes()).unwrap();
        generate_content_request(&request).map(|wire| serde_json::to_value(wire).unwrap())
    }

    fn rejected(messages: Value) -> (String, String) {
        match translate(messages).unwrap_err() {
            ProviderError::Unsupported {
                provider_kind: "gemini",
                param,
                reason,
            } => (param, reason),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn roles_map_and_same_role_turns_merge() {
        let wire = translate(json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "a"},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
            {"role": "user", "content": "d"}
        ]))
        .unwrap();
        assert_eq!(
            wire,
            json!({
                "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Use French."}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                    {"role": "model", "parts": [{"text": "c"}, {"text": "no"}]},
                    {"role": "user", "parts": [{"text": "d"}]}
                ]
            })
        );
    }

    #[test]
    fn tool_results_are_named_after_their_call() {
        let wire = translate(json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function",
                 "function": {"name": "get_time", "arguments": ""}}
            ]},
            {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
            {"role": "tool", "tool_call_id": "call_a",
             "content": [{"type": "text", "text": "{\"temp_c\": 21}"}]}
        ]))
        .unwrap();
        assert_eq!(
            wire["contents"],
            json!([
                {"role": "user", "parts": [{"text": "weather?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_time", "args": {}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_time", "response": {"content": "12:00"}}},
                    {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}}
                ]}
            ])
        );
    }

    #[test]
    fn data_url_images_go_inline() {
        let wire = translate(json!([{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
        ]}]))
        .unwrap();
        assert_eq!(
            wire["contents"][0]["parts"][1],
            json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}})
        );
    }

    #[test]
    fn image_urls_by_address_are_rejected_with_the_reason() {
        let (param, reason) = rejected(json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
        ]}]));
        assert_eq!(param, "messages[0].content[0].image_url.url");
        assert!(
            reason.contains("inline") && reason.contains("data: URL"),
            "{reason}"
        );
        let (param, _) = rejected(json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png,raw"}}
        ]}]));
        assert_eq!(param, "messages[0].content[0].image_url.url");
    }

    #[test]
    fn invalid_tool_call_arguments_are_named() {
        for arguments in ["{not json", "[1, 2]"] {
            let (param, _) = rejected(json!([
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                    "function": {"name": "f", "arguments": arguments}}]}
            ]));
            assert_eq!(param, "messages[1].tool_calls[0].function.arguments");
        }
    }

    #[test]
    fn tool_results_for_unknown_calls_are_rejected() {
        let (param, reason) = rejected(json!([
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "call_zzz", "content": "1"}
        ]));
        assert_eq!(param, "messages[1].tool_call_id");
        assert!(reason.contains("call_zzz"), "{reason}");
        let (param, _) = rejected(json!([{"role": "tool", "content": "1"}]));
        assert_eq!(param, "messages[0].tool_call_id");
    }

    #[test]
    fn fields_and_parts_gemini_cannot_carry_are_named() {
        assert_eq!(
            rejected(json!([{"role": "user", "content": "x", "name": "alice"}])).0,
            "messages[0].name"
        );
        assert_eq!(
            rejected(json!([{"role": "assistant", "content": "x", "annotations": [{}]}])).0,
            "messages[0].annotations"
        );
        // Empty fields an SDK replays with an assistant message carry nothing and pass.
        translate(
            json!([{"role": "assistant", "content": "x", "annotations": [],
                          "audio": null, "refusal": null, "tool_calls": []}]),
        )
        .unwrap();
        assert_eq!(
            rejected(json!([{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}
            ]}]))
            .0,
            "messages[0].content[0].type"
        );
        assert_eq!(
            rejected(json!([{"role": "system", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
            ]}]))
            .0,
            "messages[0].content[0].type"
        );
        assert_eq!(
            rejected(json!([{"role": "function", "name": "f", "content": "1"}])).0,
            "messages[0].name"
        );
        assert_eq!(
            rejected(json!([{"role": "function", "content": "1"}])).0,
            "messages[0].role"
        );
    }
}
