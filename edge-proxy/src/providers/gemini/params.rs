//! OpenAI's request parameters (everything but the messages) to Gemini's `generationConfig`,
//! `tools` and `toolConfig`. A parameter Gemini can carry is translated; one it cannot is a 400
//! naming it, unless its value is OpenAI's default (then it changes nothing and is dropped).
//! `user` and `safety_identifier` only attribute the request to an end user; Gemini has no
//! such field, so they are dropped.

use super::unsupported;
use super::wire::{FunctionCallingConfig, FunctionDeclaration, GenerationConfig, Tool, ToolConfig};
use crate::api::chat::ChatCompletionRequest;
use crate::providers::ProviderError;
use serde::Deserialize;
use serde_json::Value;

/// What the parameters become on Gemini's side.
#[derive(Debug, Default)]
pub struct Params {
    pub generation_config: GenerationConfig,
    pub tools: Vec<Tool>,
    pub tool_config: Option<ToolConfig>,
}

/// OpenAI parameters Gemini cannot carry, with the reason the client reads.
const NOT_CARRIED: &[(&str, &str)] = &[
    (
        "logprobs",
        "log probabilities are not translated from Gemini",
    ),
    (
        "top_logprobs",
        "log probabilities are not translated from Gemini",
    ),
    ("logit_bias", "Gemini has no token biasing"),
    (
        "parallel_tool_calls",
        "Gemini decides itself how many functions to call in a turn",
    ),
    ("audio", "audio output is not available for Gemini models"),
    (
        "modalities",
        "only text output is available for Gemini models",
    ),
    ("prediction", "Gemini has no predicted outputs"),
    (
        "store",
        "OpenAI's stored completions do not exist for Gemini models",
    ),
    (
        "metadata",
        "OpenAI's stored completions do not exist for Gemini models",
    ),
    ("service_tier", "Gemini has no service tiers"),
    (
        "reasoning_effort",
        "Gemini's thinking budget is not translated from reasoning_effort",
    ),
    ("verbosity", "Gemini has no verbosity setting"),
    (
        "web_search_options",
        "OpenAI's web search is not translated to Gemini's grounding",
    ),
    (
        "prompt_cache_key",
        "OpenAI's prompt cache hints are not translated to Gemini",
    ),
    (
        "prompt_cache_retention",
        "OpenAI's prompt cache hints are not translated to Gemini",
    ),
    (
        "functions",
        "the deprecated functions API is not translated; use tools",
    ),
    (
        "function_call",
        "the deprecated functions API is not translated; use tool_choice",
    ),
];

pub fn translate(request: &ChatCompletionRequest) -> Result<Params, ProviderError> {
    let mut config = GenerationConfig {
        max_output_tokens: request.output_token_cap(),
        candidate_count: request.n.filter(|n| *n > 1),
        ..GenerationConfig::default()
    };
    let mut tools = None;
    let mut tool_choice = None;
    for (name, value) in &request.extra {
        if value.is_null() || is_openai_default(name, value) {
            continue;
        }
        match name.as_str() {
            "temperature" => config.temperature = Some(number(name, value)?),
            "top_p" => config.top_p = Some(number(name, value)?),
            "presence_penalty" => config.presence_penalty = Some(number(name, value)?),
            "frequency_penalty" => config.frequency_penalty = Some(number(name, value)?),
            "seed" => {
                config.seed = Some(
                    value
                        .as_i64()
                        .ok_or_else(|| unsupported(name, "must be an integer"))?,
                );
            }
            "stop" => config.stop_sequences = stop_sequences(value)?,
            "response_format" => response_format(value, &mut config)?,
            "tools" => tools = Some(value),
            "tool_choice" => tool_choice = Some(value),
            "user" | "safety_identifier" => {}
            _ => {
                let reason = NOT_CARRIED.iter().find(|(known, _)| known == name).map_or(
                    "not a parameter of OpenAI's chat completions API",
                    |(_, why)| why,
                );
                return Err(unsupported(name, reason));
            }
        }
    }
    let tools = match tools {
        Some(tools) => declarations(tools)?,
        None => Vec::new(),
    };
    let tool_config = match tool_choice {
        Some(choice) => calling_config(choice, !tools.is_empty())?,
        None => None,
    };
    Ok(Params {
        generation_config: config,
        tools,
        tool_config,
    })
}

/// Values that ask for OpenAI's default behaviour, which Gemini has too.
fn is_openai_default(name: &str, value: &Value) -> bool {
    match name {
        "presence_penalty" | "frequency_penalty" | "top_logprobs" => value.as_f64() == Some(0.0),
        "logprobs" | "store" => value == &Value::Bool(false),
        "parallel_tool_calls" => value == &Value::Bool(true),
        "logit_bias" | "metadata" => value.as_object().is_some_and(serde_json::Map::is_empty),
        "service_tier" => matches!(value.as_str(), Some("auto" | "default")),
        "modalities" => value
            .as_array()
            .is_some_and(|modalities| modalities.iter().all(|modality| modality == "text")),
        _ => false,
    }
}

fn number(name: &str, value: &Value) -> Result<f64, ProviderError> {
    value
        .as_f64()
        .ok_or_else(|| unsupported(name, "must be a number"))
}

fn stop_sequences(value: &Value) -> Result<Vec<String>, ProviderError> {
    let invalid = || unsupported("stop", "must be a string or an array of strings");
    match value {
        Value::String(stop) => Ok(vec![stop.clone()]),
        Value::Array(stops) => stops
            .iter()
            .map(|stop| stop.as_str().map(str::to_owned).ok_or_else(invalid))
            .collect(),
        _ => Err(invalid()),
    }
}

#[derive(Deserialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    json_schema: Option<JsonSchemaFormat>,
}

/// `strict` is accepted and dropped: Gemini constrains output to the schema whenever one is
/// given.
#[derive(Deserialize)]
struct JsonSchemaFormat {
    #[serde(default)]
    schema: Option<Value>,
}

fn response_format(value: &Value, config: &mut GenerationConfig) -> Result<(), ProviderError> {
    let format = ResponseFormat::deserialize(value).map_err(|err| {
        unsupported(
            "response_format",
            format!("not a valid response format: {err}"),
        )
    })?;
    match format.kind {
        "text" => {}
        "json_object" => config.response_mime_type = Some("application/json"),
        "json_schema" => {
            config.response_mime_type = Some("application/json");
            config.response_json_schema = format.json_schema.and_then(|format| format.schema);
        }
        other => {
            return Err(unsupported(
                "response_format.type",
                format!("'{other}' has no Gemini equivalent"),
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct OpenAiTool<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    function: Option<OpenAiFunction>,
}

/// `strict` is accepted and dropped, as for `response_format`.
#[derive(Deserialize)]
struct OpenAiFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

fn declarations(value: &Value) -> Result<Vec<Tool>, ProviderError> {
    let tools = value
        .as_array()
        .ok_or_else(|| unsupported("tools", "must be an array of tools"))?;
    let mut declarations = Vec::with_capacity(tools.len());
    for (index, tool) in tools.iter().enumerate() {
        let tool = OpenAiTool::deserialize(tool).map_err(|err| {
            unsupported(
                format!("tools[{index}]"),
                format!("not a valid tool: {err}"),
            )
        })?;
        if tool.kind != "function" {
            return Err(unsupported(
                format!("tools[{index}].type"),
                format!("'{}' tools have no Gemini equivalent", tool.kind),
            ));
        }
        let function = tool.function.ok_or_else(|| {
            unsupported(
                format!("tools[{index}].function"),
                "a function tool needs its function",
            )
        })?;
        declarations.push(FunctionDeclaration {
            name: function.name,
            description: function.description,
            parameters_json_schema: function.parameters,
        });
    }
    if declarations.is_empty() {
        return Ok(Vec::new());
    }
    Ok(vec![Tool {
        function_declarations: declarations,
    }])
}

#[derive(Deserialize)]
struct NamedToolChoice<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    function: Option<NamedFunction>,
}

#[derive(Deserialize)]
struct NamedFunction {
    name: String,
}

fn calling_config(value: &Value, has_tools: bool) -> Result<Option<ToolConfig>, ProviderError> {
    let (mode, allowed_function_names) = match value {
        Value::String(mode) => match mode.as_str() {
            "auto" => ("AUTO", Vec::new()),
            "none" => ("NONE", Vec::new()),
            "required" => ("ANY", Vec::new()),
            other => {
                return Err(unsupported(
                    "tool_choice",
                    format!("'{other}' is not a tool choice"),
                ));
            }
        },
        Value::Object(_) => {
            let choice = NamedToolChoice::deserialize(value).map_err(|err| {
                unsupported("tool_choice", format!("not a valid tool choice: {err}"))
            })?;
            match (choice.kind, choice.function) {
                ("function", Some(function)) => ("ANY", vec![function.name]),
                (kind, _) => {
                    return Err(unsupported(
                        "tool_choice",
                        format!("'{kind}' tool choices are not translated to Gemini"),
                    ));
                }
            }
        }
        _ => {
            return Err(unsupported(
                "tool_choice",
                "must be a string or a named function",
            ));
        }
    };
    if !has_tools {
        // Without tools "auto" and "none" mean the same thing: no calls.
        return if mode == "ANY" {
            Err(unsupported("tool_choice", "requires tools"))
        } else {
            Ok(None)
        };
    }
    Ok(Some(ToolConfig {
        function_calling_config: FunctionCallingConfig {
            mode,
            allowed_function_names,
        },
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn request(extra: Value) -> ChatCompletionRequest {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        ChatCompletionRequest::parse(body.to_string().as_bytes()).unwrap()
    }

    fn rejected_param(extra: Value) -> String {
        match translate(&request(extra)).unwrap_err() {
            ProviderError::Unsupported {
                provider_kind: "gemini",
                param,
                ..
            } => param,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn sampling_parameters_land_in_generation_config() {
        let params = translate(&request(json!({
            "temperature": 0.3, "top_p": 0.9, "max_tokens": 10, "max_completion_tokens": 20,
            "n": 2, "seed": 7, "stop": "END", "presence_penalty": 0.5, "frequency_penalty": 0.1,
            "user": "alice", "safety_identifier": "hash", "stream_options": {"include_usage": true}
        })))
        .unwrap();
        let config = serde_json::to_value(&params.generation_config).unwrap();
        assert_eq!(
            config,
            json!({
                "stopSequences": ["END"], "candidateCount": 2, "maxOutputTokens": 20,
                "temperature": 0.3, "topP": 0.9, "seed": 7, "presencePenalty": 0.5,
                "frequencyPenalty": 0.1
            })
        );
    }

    #[test]
    fn openai_defaults_are_accepted_and_dropped() {
        let params = translate(&request(json!({
            "n": 1, "frequency_penalty": 0, "presence_penalty": 0.0, "logprobs": false,
            "parallel_tool_calls": true, "logit_bias": {}, "store": false,
            "service_tier": "auto", "modalities": ["text"], "top_logprobs": 0,
            "response_format": {"type": "text"}, "temperature": null
        })))
        .unwrap();
        assert!(params.generation_config.is_empty());
        assert!(params.tools.is_empty() && params.tool_config.is_none());
    }

    #[test]
    fn parameters_gemini_cannot_carry_are_named() {
        assert_eq!(rejected_param(json!({"logprobs": true})), "logprobs");
        assert_eq!(
            rejected_param(json!({"logit_bias": {"50256": -100}})),
            "logit_bias"
        );
        assert_eq!(
            rejected_param(json!({"audio": {"voice": "alloy"}})),
            "audio"
        );
        assert_eq!(
            rejected_param(json!({"parallel_tool_calls": false})),
            "parallel_tool_calls"
        );
        assert_eq!(
            rejected_param(json!({"reasoning_effort": "low"})),
            "reasoning_effort"
        );
        assert_eq!(rejected_param(json!({"top_k": 3})), "top_k");
        assert_eq!(rejected_param(json!({"temperature": "hot"})), "temperature");
        assert_eq!(rejected_param(json!({"stop": ["a", 1]})), "stop");
        assert_eq!(
            rejected_param(json!({"response_format": {"type": "grammar"}})),
            "response_format.type"
        );
    }

    #[test]
    fn unknown_parameter_reason_says_it_is_not_openai() {
        match translate(&request(json!({"top_k": 3}))).unwrap_err() {
            ProviderError::Unsupported { reason, .. } => {
                assert!(reason.contains("not a parameter"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn json_modes_set_the_mime_type_and_schema() {
        let params = translate(&request(
            json!({"response_format": {"type": "json_object"}}),
        ))
        .unwrap();
        assert_eq!(
            params.generation_config.response_mime_type,
            Some("application/json")
        );
        assert!(params.generation_config.response_json_schema.is_none());
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let params = translate(&request(json!({"response_format": {
            "type": "json_schema",
            "json_schema": {"name": "a", "strict": true, "schema": schema}
        }})))
        .unwrap();
        assert_eq!(params.generation_config.response_json_schema, Some(schema));
    }

    #[test]
    fn tools_and_tool_choice_translate() {
        let tools = json!([{"type": "function", "function": {
            "name": "get_weather", "description": "Weather", "strict": true,
            "parameters": {"type": "object", "additionalProperties": false}
        }}]);
        for (choice, mode, names) in [
            (json!("auto"), "AUTO", vec![]),
            (json!("none"), "NONE", vec![]),
            (json!("required"), "ANY", vec![]),
            (
                json!({"type": "function", "function": {"name": "get_weather"}}),
                "ANY",
                vec!["get_weather".to_owned()],
            ),
        ] {
            let params =
                translate(&request(json!({"tools": tools, "tool_choice": choice}))).unwrap();
            let config = params.tool_config.unwrap().function_calling_config;
            assert_eq!((config.mode, config.allowed_function_names), (mode, names));
            assert_eq!(
                serde_json::to_value(&params.tools).unwrap(),
                json!([{"functionDeclarations": [{
                    "name": "get_weather", "description": "Weather",
                    "parametersJsonSchema": {"type": "object", "additionalProperties": false}
                }]}])
            );
        }
    }

    #[test]
    fn bad_tools_and_tool_choices_are_named() {
        assert_eq!(
            rejected_param(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]})),
            "tools[0].type"
        );
        assert_eq!(
            rejected_param(json!({"tools": [{"type": "function"}]})),
            "tools[0].function"
        );
        assert_eq!(
            rejected_param(json!({"tools": [{"type": "function", "function": {}}]})),
            "tools[0]"
        );
        assert_eq!(
            rejected_param(json!({"tool_choice": "required"})),
            "tool_choice"
        );
        assert_eq!(
            rejected_param(json!({
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}
            })),
            "tool_choice"
        );
        let params = translate(&request(json!({"tool_choice": "none"}))).unwrap();
        assert!(params.tool_config.is_none());
    }
}
