//! OpenAI's `tools`, `tool_choice`, `parallel_tool_calls` and `response_format` → Anthropic's
//! `tools` and `tool_choice`. Anthropic has no JSON mode: `response_format` is emulated with one
//! tool whose input schema is the requested schema, forced with `tool_choice`; the response
//! side then renders that tool's input as the message content (`json_mode`).

use super::request::unsupported;
use super::wire::{Tool, ToolChoice, ToolChoiceKind};
use crate::providers::ProviderError;
use serde_json::{Map, Value, json};
use std::borrow::Cow;

/// The forced tool's name when the client's schema has none (and for `json_object`).
pub const JSON_TOOL_NAME: &str = "json_response";
/// Tells the model what the forced tool is for when the client's schema has no description.
const JSON_TOOL_DESCRIPTION: &str = "Respond by calling this tool: its input is the response.";

#[derive(Debug, Default)]
pub struct Tooling<'a> {
    pub tools: Vec<Tool<'a>>,
    pub tool_choice: Option<ToolChoice<'a>>,
    /// The tools are the JSON-mode emulation: the forced tool's input is the answer.
    pub json_mode: bool,
}

/// Reads the tool-related fields of the request's `extra` map.
pub fn tooling(fields: &Map<String, Value>) -> Result<Tooling<'_>, ProviderError> {
    let field = |name: &str| fields.get(name).filter(|value| !value.is_null());
    let tools = match field("tools") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, item)| tool(j, item))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(unsupported("tools", "must be an array of tools")),
    };
    let parallel = match field("parallel_tool_calls") {
        None => true,
        Some(Value::Bool(parallel)) => *parallel,
        Some(_) => return Err(unsupported("parallel_tool_calls", "must be a boolean")),
    };
    if let Some(json_tool) = json_tool(field("response_format"))? {
        if !tools.is_empty() {
            return Err(unsupported(
                "response_format",
                "Anthropic models emulate JSON output with a forced tool, which cannot be \
                 combined with the request's own tools",
            ));
        }
        if field("tool_choice").is_some() {
            return Err(unsupported(
                "tool_choice",
                "cannot be combined with response_format on Anthropic models",
            ));
        }
        let name = json_tool.name;
        return Ok(Tooling {
            tools: vec![json_tool],
            tool_choice: Some(ToolChoice {
                kind: ToolChoiceKind::Tool,
                name: Some(name),
                disable_parallel_tool_use: false,
            }),
            json_mode: true,
        });
    }
    let tool_choice = match field("tool_choice") {
        None if tools.is_empty() || parallel => None,
        None => Some(ToolChoice {
            kind: ToolChoiceKind::Auto,
            name: None,
            disable_parallel_tool_use: true,
        }),
        Some(choice) => choice_of(choice, parallel)?,
    };
    if tools.is_empty()
        && tool_choice.as_ref().is_some_and(|choice| {
            !matches!(choice.kind, ToolChoiceKind::Auto | ToolChoiceKind::None)
        })
    {
        return Err(unsupported("tool_choice", "requires tools"));
    }
    Ok(Tooling {
        // Without tools, "auto" and "none" mean nothing; Anthropic wants no tool_choice then.
        tool_choice: if tools.is_empty() { None } else { tool_choice },
        tools,
        json_mode: false,
    })
}

/// A function tool. `strict` is accepted and dropped: Anthropic receives the same schema but
/// does not promise schema-exact arguments (clients such as OpenAI's Agents SDK always send
/// `strict: true`, and refusing it would shut them out).
fn tool(j: usize, item: &Value) -> Result<Tool<'_>, ProviderError> {
    if item.get("type").and_then(Value::as_str) != Some("function") {
        return Err(unsupported(
            format!("tools[{j}].type"),
            "only function tools are supported",
        ));
    }
    let function = item
        .get("function")
        .filter(|function| function.is_object())
        .ok_or_else(|| unsupported(format!("tools[{j}].function"), "missing function"))?;
    let name = function
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| unsupported(format!("tools[{j}].function.name"), "missing name"))?;
    Ok(Tool {
        name,
        description: function.get("description").and_then(Value::as_str),
        input_schema: schema(function.get("parameters")),
    })
}

/// Anthropic requires an input schema; OpenAI's is optional (no parameters).
fn schema(parameters: Option<&Value>) -> Cow<'_, Value> {
    match parameters {
        Some(schema) if !schema.is_null() => Cow::Borrowed(schema),
        _ => Cow::Owned(json!({"type": "object"})),
    }
}

fn choice_of(choice: &Value, parallel: bool) -> Result<Option<ToolChoice<'_>>, ProviderError> {
    let (kind, name) = match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => (ToolChoiceKind::Auto, None),
            "required" => (ToolChoiceKind::Any, None),
            "none" => (ToolChoiceKind::None, None),
            _ => {
                return Err(unsupported(
                    "tool_choice",
                    "must be \"auto\", \"required\", \"none\" or a function",
                ));
            }
        },
        Value::Object(_) if choice.get("type").and_then(Value::as_str) == Some("function") => {
            let name = choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| unsupported("tool_choice.function.name", "missing name"))?;
            (ToolChoiceKind::Tool, Some(name))
        }
        _ => {
            return Err(unsupported(
                "tool_choice",
                "only \"auto\", \"required\", \"none\" and function choices are supported",
            ));
        }
    };
    Ok(Some(ToolChoice {
        kind,
        name,
        // Anthropic's "none" choice has no such flag; no tool is called anyway.
        disable_parallel_tool_use: !parallel && kind != ToolChoiceKind::None,
    }))
}

/// `response_format` → the forced tool, or `None` for plain text.
fn json_tool(format: Option<&Value>) -> Result<Option<Tool<'_>>, ProviderError> {
    let Some(format) = format else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(Tool {
            name: JSON_TOOL_NAME,
            description: Some(JSON_TOOL_DESCRIPTION),
            input_schema: schema(None),
        })),
        Some("json_schema") => {
            let spec = format
                .get("json_schema")
                .filter(|spec| spec.is_object())
                .ok_or_else(|| unsupported("response_format.json_schema", "missing json_schema"))?;
            // `strict` is accepted for the same reason as on tools: see `tool`.
            Ok(Some(Tool {
                name: spec
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or(JSON_TOOL_NAME),
                description: Some(
                    spec.get("description")
                        .and_then(Value::as_str)
                        .unwrap_or(JSON_TOOL_DESCRIPTION),
                ),
                input_schema: schema(spec.get("schema")),
            }))
        }
        _ => Err(unsupported(
            "response_format.type",
            "must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}
