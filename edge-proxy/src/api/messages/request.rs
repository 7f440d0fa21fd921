//! An Anthropic Messages request, validated field by field and translated into the gateway's
//! OpenAI-shaped `ChatCompletionRequest`. Errors name the field with Anthropic's path spelling
//! (`messages.0.content.1: ...`).
//!
//! Where the two APIs differ:
//! - `system` (a string or text blocks) becomes one leading system message, blocks joined
//!   with a newline.
//! - `tool_result` blocks become `tool` messages placed before the rest of their user turn,
//!   since OpenAI wants them directly after the assistant message that made the calls; a
//!   result marked `is_error` has its text prefixed with `Error: `. Images inside a tool result
//!   have no OpenAI equivalent and are refused by name.
//! - An assistant turn's text blocks are joined without a separator (they are one text, split
//!   by Anthropic only around citations and tool calls).
//! - `cache_control` hints are accepted and dropped: they change cost, not meaning, and the
//!   gateway's request shape has no place for them.
//! - A field the gateway cannot carry to every provider (`thinking`, `service_tier`,
//!   server tools, ...) is a 400 naming it, never silently dropped.

use super::fields::{field_error, invalid, optional, required, typed};
use super::input::{
    ImageSource, InputBlock, InputMessage, InputRole, Metadata, ResultBlock, TextBlock, TextOr,
    Tool, ToolChoice,
};
use crate::api::chat::{ChatCompletionRequest, ChatMessage, MessageContent, Role, StreamOptions};
use crate::api::json::{self, ParseLimits};
use crate::error::{FieldProblem, GatewayError};
use serde_json::{Map, Number, Value, json};

/// Parses a `POST /v1/messages` body into the request the gateway routes.
pub fn parse(body: &[u8]) -> Result<ChatCompletionRequest, GatewayError> {
    parse_within(body, &ParseLimits::default())
}

/// Like [`parse`], with the body's size bounded by `limits` before it is a tree.
pub fn parse_within(
    body: &[u8],
    limits: &ParseLimits,
) -> Result<ChatCompletionRequest, GatewayError> {
    let mut fields = json::parse_object(body, limits)?;
    json::check_item_count(&fields, "messages", limits.max_items)?;
    let model: String = required(&mut fields, "model")?;
    if model.is_empty() {
        return Err(invalid("model", "must not be empty"));
    }
    let max_tokens: u32 = required(&mut fields, "max_tokens")?;
    if max_tokens == 0 {
        return Err(invalid("max_tokens", "must be greater than or equal to 1"));
    }
    let input: Vec<InputMessage> = required(&mut fields, "messages")?;
    if input.is_empty() {
        return Err(invalid("messages", "at least one message is required"));
    }
    let system: Option<TextOr<TextBlock>> = optional(&mut fields, "system")?;
    let stream = optional(&mut fields, "stream")?.unwrap_or(false);
    let stop_sequences: Option<Vec<String>> = optional(&mut fields, "stop_sequences")?;
    let temperature: Option<Number> = optional(&mut fields, "temperature")?;
    let top_p: Option<Number> = optional(&mut fields, "top_p")?;
    let top_k: Option<u32> = optional(&mut fields, "top_k")?;
    let metadata: Option<Metadata> = optional(&mut fields, "metadata")?;
    let tools: Option<Vec<Value>> = optional(&mut fields, "tools")?;
    let tool_choice: Option<ToolChoice> = optional(&mut fields, "tool_choice")?;
    if let Some(name) = fields.keys().next() {
        return Err(field_error(
            name,
            FieldProblem::InvalidValue,
            "Extra inputs are not permitted (the gateway cannot carry this field to every provider)",
        ));
    }

    let mut messages = Vec::with_capacity(input.len() + 1);
    if let Some(system) = system {
        messages.push(text_message(Role::System, system_text(system)));
    }
    for (index, message) in input.into_iter().enumerate() {
        translate_message(index, message, &mut messages)?;
    }

    let mut extra = Map::new();
    if let Some(temperature) = temperature {
        extra.insert("temperature".to_owned(), Value::Number(temperature));
    }
    if let Some(top_p) = top_p {
        extra.insert("top_p".to_owned(), Value::Number(top_p));
    }
    // Not OpenAI's, but OpenAI-compatible servers (vLLM, Ollama), Anthropic and Gemini take it.
    if let Some(top_k) = top_k {
        extra.insert("top_k".to_owned(), Value::from(top_k));
    }
    if let Some(stop) = stop_sequences.filter(|stop| !stop.is_empty()) {
        extra.insert("stop".to_owned(), json!(stop));
    }
    if let Some(user) = metadata.and_then(|metadata| metadata.user_id) {
        extra.insert("user".to_owned(), Value::String(user));
    }
    let tools = translate_tools(tools.unwrap_or_default())?;
    let has_tools = !tools.is_empty();
    if has_tools {
        extra.insert("tools".to_owned(), Value::Array(tools));
    }
    if let Some(choice) = tool_choice {
        translate_tool_choice(choice, has_tools, &mut extra)?;
    }
    Ok(ChatCompletionRequest {
        model,
        messages,
        stream,
        // The renderer reports usage in `message_delta`, so the stream must carry it.
        stream_options: stream.then(|| StreamOptions {
            include_usage: true,
            extra: Map::new(),
        }),
        max_tokens: Some(max_tokens),
        max_completion_tokens: None,
        n: None,
        extra,
    })
}

fn system_text(system: TextOr<TextBlock>) -> String {
    match system {
        TextOr::Text(text) => text,
        TextOr::Blocks(blocks) => blocks
            .into_iter()
            .map(|TextBlock::Text { text, .. }| text)
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn translate_message(
    index: usize,
    message: InputMessage,
    out: &mut Vec<ChatMessage>,
) -> Result<(), GatewayError> {
    match (message.role, message.content) {
        (InputRole::User, TextOr::Text(text)) => out.push(text_message(Role::User, text)),
        (InputRole::Assistant, TextOr::Text(text)) => {
            out.push(text_message(Role::Assistant, text));
        }
        (InputRole::User, TextOr::Blocks(blocks)) => user_turn(index, blocks, out)?,
        (InputRole::Assistant, TextOr::Blocks(blocks)) => {
            out.push(assistant_turn(index, blocks)?);
        }
    }
    Ok(())
}

/// Tool results first (as `tool` messages), then the turn's text and images as one user
/// message, if it has any.
fn user_turn(
    index: usize,
    blocks: Vec<InputBlock>,
    out: &mut Vec<ChatMessage>,
) -> Result<(), GatewayError> {
    let mut parts = Vec::new();
    let mut tool_results = 0;
    for (block_index, block) in blocks.into_iter().enumerate() {
        let path = || format!("messages.{index}.content.{block_index}");
        match block {
            InputBlock::Text { text, .. } => parts.push(json!({"type": "text", "text": text})),
            InputBlock::Image { source, .. } => parts.push(image_part(source)),
            InputBlock::ToolResult {
                tool_use_id,
                content,
                is_error,
                ..
            } => {
                tool_results += 1;
                out.push(tool_message(
                    &path(),
                    tool_use_id,
                    content,
                    is_error.unwrap_or(false),
                )?);
            }
            InputBlock::ToolUse { .. } => {
                return Err(invalid(
                    &path(),
                    "tool_use blocks are only allowed in assistant messages",
                ));
            }
        }
    }
    if !parts.is_empty() || tool_results == 0 {
        out.push(ChatMessage {
            role: Role::User,
            content: Some(MessageContent::Parts(parts)),
            extra: Map::new(),
        });
    }
    Ok(())
}

fn assistant_turn(index: usize, blocks: Vec<InputBlock>) -> Result<ChatMessage, GatewayError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (block_index, block) in blocks.into_iter().enumerate() {
        let path = || format!("messages.{index}.content.{block_index}");
        match block {
            InputBlock::Text { text: piece, .. } => text.push_str(&piece),
            InputBlock::ToolUse {
                id, name, input, ..
            } => calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": Value::Object(input).to_string()},
            })),
            InputBlock::Image { .. } => {
                return Err(invalid(&path(), "images are only allowed in user messages"));
            }
            InputBlock::ToolResult { .. } => {
                return Err(invalid(
                    &path(),
                    "tool_result blocks are only allowed in user messages",
                ));
            }
        }
    }
    let mut extra = Map::new();
    let content = if text.is_empty() && !calls.is_empty() {
        None
    } else {
        Some(MessageContent::Text(text))
    };
    if !calls.is_empty() {
        extra.insert("tool_calls".to_owned(), Value::Array(calls));
    }
    Ok(ChatMessage {
        role: Role::Assistant,
        content,
        extra,
    })
}

fn tool_message(
    path: &str,
    tool_use_id: String,
    content: Option<TextOr<ResultBlock>>,
    is_error: bool,
) -> Result<ChatMessage, GatewayError> {
    let text = match content {
        None => String::new(),
        Some(TextOr::Text(text)) => text,
        Some(TextOr::Blocks(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (index, block) in blocks.into_iter().enumerate() {
                match block {
                    ResultBlock::Text { text, .. } => texts.push(text),
                    ResultBlock::Image { .. } => {
                        return Err(invalid(
                            &format!("{path}.content.{index}"),
                            "images in tool results are not supported by the gateway (OpenAI-shaped tool messages carry text only)",
                        ));
                    }
                }
            }
            texts.join("\n")
        }
    };
    let text = match (is_error, text.is_empty()) {
        (false, _) => text,
        (true, true) => "Error".to_owned(),
        (true, false) => format!("Error: {text}"),
    };
    let mut extra = Map::new();
    extra.insert("tool_call_id".to_owned(), Value::String(tool_use_id));
    Ok(ChatMessage {
        role: Role::Tool,
        content: Some(MessageContent::Text(text)),
        extra,
    })
}

fn image_part(source: ImageSource) -> Value {
    let url = match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url,
    };
    json!({"type": "image_url", "image_url": {"url": url}})
}

/// Custom tools become OpenAI function tools; server tools (web search, code execution, ...)
/// run inside Anthropic and cannot be routed anywhere else.
fn translate_tools(tools: Vec<Value>) -> Result<Vec<Value>, GatewayError> {
    let mut translated = Vec::with_capacity(tools.len());
    for (index, value) in tools.into_iter().enumerate() {
        let path = format!("tools.{index}");
        if let Some(kind) = value.get("type").and_then(Value::as_str)
            && kind != "custom"
        {
            return Err(invalid(
                &format!("{path}.type"),
                &format!(
                    "server tool '{kind}' is not supported by the gateway; define a custom tool with an input_schema"
                ),
            ));
        }
        let tool: Tool = typed(&path, value)?;
        let mut function = Map::new();
        function.insert("name".to_owned(), Value::String(tool.name));
        if let Some(description) = tool.description {
            function.insert("description".to_owned(), Value::String(description));
        }
        function.insert("parameters".to_owned(), Value::Object(tool.input_schema));
        translated.push(json!({"type": "function", "function": function}));
    }
    Ok(translated)
}

/// auto/any/tool/none → auto/required/{function}/none. Without tools, `auto` and `none` mean
/// nothing and are dropped (OpenAI refuses a tool_choice without tools); `any` and `tool`
/// cannot be honoured and are a 400.
fn translate_tool_choice(
    choice: ToolChoice,
    has_tools: bool,
    extra: &mut Map<String, Value>,
) -> Result<(), GatewayError> {
    let (choice, disable_parallel) = match choice {
        ToolChoice::Auto {
            disable_parallel_tool_use,
        } => (json!("auto"), disable_parallel_tool_use),
        ToolChoice::Any {
            disable_parallel_tool_use,
        } => (json!("required"), disable_parallel_tool_use),
        ToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        } => (
            json!({"type": "function", "function": {"name": name}}),
            disable_parallel_tool_use,
        ),
        ToolChoice::None => (json!("none"), None),
    };
    if !has_tools {
        if choice == "auto" || choice == "none" {
            return Ok(());
        }
        return Err(invalid(
            "tool_choice",
            "requires at least one tool in 'tools'",
        ));
    }
    extra.insert("tool_choice".to_owned(), choice);
    if disable_parallel == Some(true) {
        extra.insert("parallel_tool_calls".to_owned(), Value::Bool(false));
    }
    Ok(())
}

fn text_message(role: Role, text: String) -> ChatMessage {
    ChatMessage {
        role,
        content: Some(MessageContent::Text(text)),
        extra: Map::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn refused(body: serde_json::Value) -> (String, String) {
        match parse(body.to_string().as_bytes()).unwrap_err() {
            GatewayError::InvalidField { param, message, .. } => (param, message),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn hello() -> serde_json::Value {
        json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
    }

    #[test]
    fn a_minimal_request_translates_to_one_user_message_with_the_output_cap() {
        let request = parse(hello().to_string().as_bytes()).unwrap();
        assert_eq!(request.model, "m");
        assert_eq!(request.max_tokens, Some(8));
        assert!(!request.stream && request.stream_options.is_none());
        assert_eq!(
            serde_json::to_value(&request.messages).unwrap(),
            json!([{"role": "user", "content": "hi"}])
        );
    }

    #[test]
    fn streaming_always_asks_the_upstream_for_usage() {
        let mut body = hello();
        body["stream"] = json!(true);
        let request = parse(body.to_string().as_bytes()).unwrap();
        assert!(request.stream && request.wants_stream_usage());
    }

    #[test]
    fn missing_and_mistyped_fields_are_named_as_anthropic_does() {
        let mut body = hello();
        body.as_object_mut().unwrap().remove("max_tokens");
        assert_eq!(
            refused(body),
            ("max_tokens".into(), "max_tokens: Field required".into())
        );
        let mut body = hello();
        body["max_tokens"] = json!(0);
        assert_eq!(refused(body).0, "max_tokens");
        let mut body = hello();
        body["messages"] = json!([]);
        assert_eq!(refused(body).0, "messages");
        let mut body = hello();
        body["messages"][0]["role"] = json!("system");
        assert_eq!(refused(body).0, "messages.0.role");
        let mut body = hello();
        body["messages"] = json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "document", "source": {}}]}]);
        let (param, message) = refused(body);
        assert_eq!(param, "messages.0.content.1.type");
        assert!(message.contains("unknown variant `document`"), "{message}");
    }

    #[test]
    fn fields_the_gateway_cannot_carry_are_refused_by_name() {
        let mut body = hello();
        body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
        let (param, message) = refused(body);
        assert_eq!(param, "thinking");
        assert!(message.starts_with("thinking: Extra inputs"), "{message}");

        let mut body = hello();
        body["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
        assert_eq!(refused(body).0, "tools.0.type");

        let mut body = hello();
        body["tool_choice"] = json!({"type": "any"});
        assert_eq!(refused(body).0, "tool_choice");

        let mut body = hello();
        body["messages"][0]["content"] = json!([{"type": "text", "text": "x", "citations": []}]);
        assert_eq!(refused(body).0, "messages.0.content.0");
    }

    #[test]
    fn tool_choice_without_tools_is_dropped_when_it_means_nothing() {
        let mut body = hello();
        body["tool_choice"] = json!({"type": "auto", "disable_parallel_tool_use": true});
        let request = parse(body.to_string().as_bytes()).unwrap();
        assert!(!request.extra.contains_key("tool_choice"));
        assert!(!request.extra.contains_key("parallel_tool_calls"));
    }

    #[test]
    fn tool_results_precede_the_rest_of_the_user_turn_and_errors_are_marked() {
        let body = json!({"model": "m", "max_tokens": 8, "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": [
                {"type": "text", "text": "and then?"},
                {"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true},
            ]},
        ]});
        let request = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            serde_json::to_value(&request.messages).unwrap(),
            json!([
                {"role": "assistant", "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "content": "Error", "tool_call_id": "toolu_1"},
                {"role": "user", "content": [{"type": "text", "text": "and then?"}]},
            ])
        );
    }

    #[test]
    fn blocks_in_the_wrong_role_and_images_in_tool_results_are_refused() {
        let mut body = hello();
        body["messages"] = json!([{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]);
        assert_eq!(refused(body).0, "messages.0.content.0");
        let mut body = hello();
        body["messages"] = json!([{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t"}]}]);
        assert_eq!(refused(body).0, "messages.0.content.0");
        let mut body = hello();
        body["messages"] = json!([{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
        ]}]}]);
        assert_eq!(refused(body).0, "messages.0.content.0.content.0");
    }

    #[test]
    fn malformed_json_and_non_objects_are_rejected() {
        assert!(matches!(
            parse(b"{nope"),
            Err(GatewayError::MalformedJson(_))
        ));
        assert!(matches!(parse(b"[]"), Err(GatewayError::MalformedJson(_))));
    }
}
