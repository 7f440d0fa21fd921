//! Chat prompt tokens: the messages' text plus the framing tokens OpenAI's chat format adds, as
//! its cookbook counts them for current chat models (GPT-3.5 Turbo 0613 and later, GPT-4,
//! GPT-4o and newer).

use super::Encoding;
use crate::api::chat::{ChatCompletionRequest, ChatMessage, MessageContent, Role};
use serde_json::Value;

/// Framing around every message (`<|start|>{role}<|message|>...<|end|>` less the role itself).
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Added when a message carries a `name` (besides the name's own tokens).
pub const TOKENS_PER_NAME: u64 = 1;
/// Every reply is primed with `<|start|>assistant<|message|>`.
pub const REPLY_PRIMING_TOKENS: u64 = 3;
/// Added per tool or function call in an assistant message: a heuristic, as in `tiktoken-rs`;
/// OpenAI does not publish how calls are rendered.
pub const TOKENS_PER_TOOL_CALL: u64 = 1;

/// Counted per image part: what OpenAI charges for a 1024×1024 image at high detail (85 + 4
/// tiles × 170). The real figure depends on the image's size, which the edge does not decode;
/// provider usage replaces this after the call.
pub const TOKENS_PER_IMAGE: u64 = 765;

/// Prompt tokens of `request` in `encoding`, framing included. Tool definitions and a JSON
/// schema in `response_format` count as their JSON text: upstreams render them into the prompt
/// (OpenAI in a more compact form it does not publish), so this errs on the high side, which is
/// the safe side for reservations.
pub(super) fn count_prompt(encoding: Encoding, request: &ChatCompletionRequest) -> u64 {
    let messages: u64 = request
        .messages
        .iter()
        .map(|message| count_message(encoding, message))
        .sum();
    let definitions: u64 = ["tools", "functions", "response_format"]
        .iter()
        .filter_map(|field| request.extra.get(*field))
        .filter(|value| !value.is_null())
        .map(|value| encoding.count(&value.to_string()))
        .sum();
    messages
        .saturating_add(definitions)
        .saturating_add(REPLY_PRIMING_TOKENS)
}

fn count_message(encoding: Encoding, message: &ChatMessage) -> u64 {
    let mut tokens = TOKENS_PER_MESSAGE + encoding.count(role_name(message.role));
    if let Some(content) = &message.content {
        tokens += count_content(encoding, content);
    }
    if let Some(name) = message.extra.get("name").and_then(Value::as_str) {
        tokens += encoding.count(name) + TOKENS_PER_NAME;
    }
    if let Some(refusal) = message.extra.get("refusal").and_then(Value::as_str) {
        tokens += encoding.count(refusal);
    }
    if let Some(call) = message.extra.get("function_call") {
        tokens += count_call(encoding, call);
    }
    if let Some(Value::Array(calls)) = message.extra.get("tool_calls") {
        tokens += calls
            .iter()
            .map(|call| count_call(encoding, call))
            .sum::<u64>();
    }
    tokens
}

/// A string, or the text of each text (and refusal) part, plus `TOKENS_PER_IMAGE` per image;
/// other parts (audio, files) count nothing. Parts are counted one by one, not joined: tiktoken
/// would see no separator.
fn count_content(encoding: Encoding, content: &MessageContent) -> u64 {
    match content {
        MessageContent::Text(text) => encoding.count(text),
        MessageContent::Parts(parts) => parts
            .iter()
            .map(|part| {
                let text = part
                    .get("text")
                    .or_else(|| part.get("refusal"))
                    .and_then(Value::as_str);
                match text {
                    Some(text) => encoding.count(text),
                    None if part.get("type").and_then(Value::as_str) == Some("image_url") => {
                        TOKENS_PER_IMAGE
                    }
                    None => 0,
                }
            })
            .sum(),
    }
}

/// A tool call (`{"type":"function","function":{"name","arguments"}}`) or a legacy
/// `function_call` (`{"name","arguments"}`): the name plus the arguments' JSON text. Arguments
/// that are not a string (a client sending an object) count as their serialized JSON; a call of
/// any other shape (custom tools) counts as its whole JSON text.
fn count_call(encoding: Encoding, call: &Value) -> u64 {
    let function = call.get("function").unwrap_or(call);
    let name = function.get("name").and_then(Value::as_str);
    let call_text = match (name, function.get("arguments")) {
        (Some(name), Some(Value::String(arguments))) => {
            encoding.count(name) + encoding.count(arguments)
        }
        (Some(name), Some(arguments)) => {
            encoding.count(name) + encoding.count(&arguments.to_string())
        }
        (Some(name), None) => encoding.count(name),
        (None, _) => encoding.count(&call.to_string()),
    };
    call_text + TOKENS_PER_TOOL_CALL
}

/// The role as it appears in the rendered prompt (and on the wire).
fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::Developer => "developer",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
        Role::Function => "function",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENCODING: Encoding = Encoding::O200kBase;

    fn request(messages: Value) -> ChatCompletionRequest {
        let body = json!({"model": "gpt-4o", "messages": messages});
        ChatCompletionRequest::parse(body.to_string().as_bytes()).unwrap()
    }

    fn count(messages: Value) -> u64 {
        count_prompt(ENCODING, &request(messages))
    }

    #[test]
    fn role_names_match_the_wire_spelling() {
        for role in [
            Role::System,
            Role::Developer,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Function,
        ] {
            assert_eq!(json!(role), json!(role_name(role)));
        }
    }

    #[test]
    fn each_message_adds_framing_role_and_content() {
        let one = count(json!([{"role": "user", "content": "hello world"}]));
        assert_eq!(
            one,
            TOKENS_PER_MESSAGE + ENCODING.count("user") + 2 + REPLY_PRIMING_TOKENS
        );
        let two = count(json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello world"},
        ]));
        assert_eq!(
            two,
            one + TOKENS_PER_MESSAGE + ENCODING.count("system") + ENCODING.count("Be brief.")
        );
    }

    #[test]
    fn tool_definitions_schemas_and_images_count() {
        let messages = json!([{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
        ]}]);
        let plain = count(json!([{"role": "user", "content": [
            {"type": "text", "text": "what is this?"}
        ]}]));
        assert_eq!(count(messages.clone()), plain + TOKENS_PER_IMAGE);

        let tools = json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
        let body = json!({"model": "gpt-4o", "messages": messages, "tools": tools,
            "response_format": {"type": "json_object"}});
        let with_definitions = count_prompt(
            ENCODING,
            &ChatCompletionRequest::parse(body.to_string().as_bytes()).unwrap(),
        );
        assert_eq!(
            with_definitions,
            count(messages)
                + ENCODING.count(&tools.to_string())
                + ENCODING.count(&json!({"type": "json_object"}).to_string())
        );
    }

    #[test]
    fn a_name_adds_its_tokens_plus_one() {
        let without = count(json!([{"role": "user", "content": "hi"}]));
        let with = count(json!([{"role": "user", "content": "hi", "name": "example_user"}]));
        assert_eq!(
            with,
            without + ENCODING.count("example_user") + TOKENS_PER_NAME
        );
        // A null name is no name.
        let null = count(json!([{"role": "user", "content": "hi", "name": null}]));
        assert_eq!(null, without);
    }

    #[test]
    fn missing_content_counts_only_framing() {
        assert_eq!(
            count(json!([{"role": "assistant"}])),
            TOKENS_PER_MESSAGE + ENCODING.count("assistant") + REPLY_PRIMING_TOKENS
        );
    }

    #[test]
    fn text_parts_count_each_on_its_own_and_images_a_fixed_amount() {
        let framing = count(json!([{"role": "user", "content": ""}]));
        let parts = count(json!([{"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            {"type": "text", "text": "Answer briefly."},
        ]}]));
        assert_eq!(
            parts,
            framing
                + ENCODING.count("What is in this image?")
                + ENCODING.count("Answer briefly.")
                + TOKENS_PER_IMAGE
        );
        let image_only = count(json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        ]}]));
        assert_eq!(image_only, framing + TOKENS_PER_IMAGE);
    }

    #[test]
    fn tool_calls_count_name_arguments_and_one_each() {
        let framing = count(json!([{"role": "assistant", "content": null}]));
        let arguments = r#"{"city":"Paris","unit":"celsius"}"#;
        let calls = count(
            json!([{"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": arguments}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "get_time", "arguments": "{}"}},
            ]}]),
        );
        assert_eq!(
            calls,
            framing
                + ENCODING.count("get_weather")
                + ENCODING.count(arguments)
                + ENCODING.count("get_time")
                + ENCODING.count("{}")
                + 2 * TOKENS_PER_TOOL_CALL
        );
        let legacy = count(json!([{"role": "assistant", "content": null,
            "function_call": {"name": "get_weather", "arguments": arguments}}]));
        assert_eq!(
            legacy,
            framing + ENCODING.count("get_weather") + ENCODING.count(arguments) + 1
        );
    }

    #[test]
    fn odd_tool_calls_count_as_json_text() {
        let framing = count(json!([{"role": "assistant", "content": null}]));
        let custom = json!({"id": "c", "type": "custom", "custom": {"input": "x"}});
        let with_custom = count(json!([{"role": "assistant", "tool_calls": [custom.clone()]}]));
        assert_eq!(
            with_custom,
            framing + ENCODING.count(&custom.to_string()) + TOKENS_PER_TOOL_CALL
        );
        let object_arguments = json!({"city": "Paris"});
        let with_object = count(json!([{"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": object_arguments.clone()}},
        ]}]));
        assert_eq!(
            with_object,
            framing
                + ENCODING.count("f")
                + ENCODING.count(&object_arguments.to_string())
                + TOKENS_PER_TOOL_CALL
        );
        // Not an array: nothing to count, and no panic.
        let not_array = count(json!([{"role": "assistant", "tool_calls": "nope"}]));
        assert_eq!(not_array, framing);
    }

    #[test]
    fn openai_cookbook_example_counts_as_published() {
        // The example from OpenAI's "How to count tokens with tiktoken" cookbook, whose counts
        // the cookbook checked against the API's reported prompt_tokens.
        let messages = json!([
            {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
            {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
            {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
            {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
            {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
            {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
        ]);
        let request = request(messages);
        assert_eq!(count_prompt(Encoding::Cl100kBase, &request), 129);
        assert_eq!(count_prompt(Encoding::O200kBase, &request), 124);
    }
}
