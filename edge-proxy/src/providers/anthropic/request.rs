//! The client's OpenAI-shaped request → an Anthropic Messages body. Every OpenAI parameter is
//! either translated, accepted because its value is OpenAI's default (a no-op), or refused
//! with a 400 naming it; fields that are not OpenAI parameters at all are refused too, so
//! nothing the client asked for is silently lost.

use super::messages;
use super::tools::{self, Tooling};
use super::wire::{MessagesRequest, Metadata};
use crate::api::chat::ChatCompletionRequest;
use crate::providers::ProviderError;
use serde_json::{Number, Value};

/// Anthropic requires `max_tokens`; OpenAI does not. Used when the client sets no cap: large
/// enough for ordinary answers, small enough for every current Claude model's output limit.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Anthropic's temperature range is 0..=1 (OpenAI's is 0..=2; values are not rescaled, since
/// the two scales do not correspond).
const MAX_TEMPERATURE: f64 = 1.0;

/// The body to send, and how to read the answer.
#[derive(Debug)]
pub struct Translated<'a> {
    pub body: MessagesRequest<'a>,
    /// `response_format` is emulated with a forced tool whose input becomes the content.
    pub json_mode: bool,
}

/// A 400 naming `param`.
pub fn unsupported(param: impl Into<String>, reason: impl Into<String>) -> ProviderError {
    ProviderError::Unsupported {
        provider_kind: super::KIND,
        param: param.into(),
        reason: reason.into(),
    }
}

pub fn translate<'a>(
    upstream_model: &'a str,
    request: &'a ChatCompletionRequest,
    stream: bool,
) -> Result<Translated<'a>, ProviderError> {
    if request.choices() > 1 {
        return Err(unsupported(
            "n",
            "Anthropic models generate one choice per request",
        ));
    }
    let conversation = messages::convert(&request.messages)?;
    let Tooling {
        tools,
        tool_choice,
        json_mode,
    } = tools::tooling(&request.extra)?;
    let mut body = MessagesRequest {
        model: upstream_model,
        max_tokens: request.output_token_cap().unwrap_or(DEFAULT_MAX_TOKENS),
        system: conversation.system,
        messages: conversation.messages,
        temperature: None,
        top_p: None,
        stop_sequences: Vec::new(),
        tools,
        tool_choice,
        metadata: None,
        stream,
    };
    // `stream_options` is ours to honour (the pipeline strips usage the client did not ask for).
    for (name, value) in &request.extra {
        if !value.is_null() {
            parameter(name, value, &mut body)?;
        }
    }
    Ok(Translated { body, json_mode })
}

/// One non-null field of the request's `extra` map.
fn parameter<'a>(
    name: &str,
    value: &'a Value,
    body: &mut MessagesRequest<'a>,
) -> Result<(), ProviderError> {
    match name {
        "temperature" => {
            let temperature = number(name, value)?;
            if temperature.as_f64().is_some_and(|t| t > MAX_TEMPERATURE) {
                return Err(unsupported(
                    name,
                    format!("Anthropic models accept 0 to {MAX_TEMPERATURE}"),
                ));
            }
            body.temperature = Some(temperature);
        }
        "top_p" => body.top_p = Some(number(name, value)?),
        "stop" => body.stop_sequences = stop_sequences(value)?,
        // Attribution only; `safety_identifier` is OpenAI's newer name for `user`.
        "user" | "safety_identifier" => {
            let user_id = value
                .as_str()
                .ok_or_else(|| unsupported(name, "must be a string"))?;
            if body.metadata.is_none() || name == "user" {
                body.metadata = Some(Metadata { user_id });
            }
        }
        // Read by `tools::tooling`.
        "tools" | "tool_choice" | "parallel_tool_calls" | "response_format" => {}
        _ => no_op(name, value)?,
    }
    Ok(())
}

/// OpenAI parameters Anthropic cannot carry: accepted only at their default value.
fn no_op(name: &str, value: &Value) -> Result<(), ProviderError> {
    let is_default = match name {
        "frequency_penalty" | "presence_penalty" => value.as_f64() == Some(0.0),
        "logprobs" | "store" => value == &Value::Bool(false),
        "logit_bias" => value.as_object().is_some_and(serde_json::Map::is_empty),
        "modalities" => value
            .as_array()
            .is_some_and(|modalities| modalities.iter().all(|m| m == "text")),
        "service_tier" => value == "auto",
        _ => false,
    };
    if is_default {
        return Ok(());
    }
    let reason = match name {
        "frequency_penalty" | "presence_penalty" => "Anthropic models have no penalties",
        "logprobs" | "top_logprobs" => "Anthropic models do not return log probabilities",
        "logit_bias" => "Anthropic models take no logit bias",
        "seed" => "Anthropic models do not take a sampling seed",
        "modalities" | "audio" => "Anthropic models answer with text only",
        "store" | "metadata" => "Anthropic does not store completions (use 'user' for attribution)",
        "service_tier" => "only the default service tier is available",
        "reasoning_effort" => "extended thinking cannot be requested through this API",
        "prediction" => "Anthropic models take no predicted output",
        "web_search_options" => "web search is not available through this API",
        "verbosity" => "Anthropic models take no verbosity setting",
        "prompt_cache_key" => "Anthropic caches prompts by content, not by key",
        "functions" | "function_call" => "deprecated; use 'tools' and 'tool_choice'",
        _ => "not a parameter of OpenAI's chat completions API",
    };
    Err(unsupported(name, reason))
}

fn number<'a>(name: &str, value: &'a Value) -> Result<&'a Number, ProviderError> {
    match value {
        Value::Number(number) => Ok(number),
        _ => Err(unsupported(name, "must be a number")),
    }
}

fn stop_sequences(value: &Value) -> Result<Vec<&str>, ProviderError> {
    let invalid = || unsupported("stop", "must be a string or an array of strings");
    match value {
        Value::String(stop) => Ok(vec![stop.as_str()]),
        Value::Array(stops) => stops
            .iter()
            .map(|stop| stop.as_str().ok_or_else(invalid))
            .collect(),
        _ => Err(invalid()),
    }
}
