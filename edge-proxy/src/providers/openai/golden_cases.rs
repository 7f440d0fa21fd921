//! Client requests for the golden cases of the OpenAI-family adapters: OpenAI and Azure OpenAI
//! speak the same bodies. Replies are fixtures of real wire text under each adapter's
//! `fixtures/`.

use serde_json::{Value, json};

fn weather_tool() -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "City and country"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["location"],
                "additionalProperties": false
            }
        }
    })
}

fn time_tool() -> Value {
    json!({
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current local time in a time zone.",
            "parameters": {
                "type": "object",
                "properties": {"tz": {"type": "string"}},
                "required": ["tz"]
            }
        }
    })
}

pub fn text() -> Value {
    json!({"model": "public-model", "messages": [{"role": "user", "content": "Hello!"}]})
}

pub fn multi_turn() -> Value {
    json!({
        "model": "public-model",
        "messages": [
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Nice to meet you, Ada!"},
            {"role": "user", "content": "What did I say my name was?"}
        ]
    })
}

pub fn system_prompt() -> Value {
    json!({
        "model": "public-model",
        "messages": [
            {"role": "system", "content": "You are a pirate. Answer in one sentence."},
            {"role": "user", "content": "How is the sea today?"}
        ],
        "temperature": 0.7,
        "max_tokens": 50
    })
}

pub fn tool_call() -> Value {
    json!({
        "model": "public-model",
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        "tools": [weather_tool()],
        "tool_choice": "auto"
    })
}

pub fn tool_result() -> Value {
    json!({
        "model": "public-model",
        "messages": [
            {"role": "user", "content": "What's the weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_Vx3kQ9pLr2mN8bT4cY7wZ1sD",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris, France\",\"unit\":\"celsius\"}"}
            }]},
            {"role": "tool", "tool_call_id": "call_Vx3kQ9pLr2mN8bT4cY7wZ1sD", "content": "{\"temp_c\":18,\"sky\":\"sunny\"}"}
        ],
        "tools": [weather_tool()]
    })
}

pub fn tool_call_streaming() -> Value {
    json!({
        "model": "public-model",
        "messages": [{"role": "user", "content": "Weather and local time in Paris?"}],
        "tools": [weather_tool(), time_tool()],
        "tool_choice": "auto",
        "parallel_tool_calls": true,
        "stream": true
    })
}

pub fn json_mode() -> Value {
    json!({
        "model": "public-model",
        "messages": [
            {"role": "system", "content": "Reply with a JSON object."},
            {"role": "user", "content": "Facts about Paris: city, country, population in millions."}
        ],
        "response_format": {"type": "json_object"}
    })
}

pub fn json_schema() -> Value {
    json!({
        "model": "public-model",
        "messages": [{"role": "user", "content": "Who wrote the first computer program?"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "person",
                "strict": true,
                "schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "born": {"type": "integer"}},
                    "required": ["name", "born"],
                    "additionalProperties": false
                }
            }
        }
    })
}

pub fn image_input() -> Value {
    json!({
        "model": "public-model",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this image?"},
            {"type": "image_url", "image_url": {
                "url": "https://upload.wikimedia.org/wikipedia/commons/thumb/d/dd/Gfp-wisconsin-madison-the-nature-boardwalk.jpg/2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg",
                "detail": "low"
            }}
        ]}],
        "max_completion_tokens": 300
    })
}

/// A request the upstream refuses (temperature above 2).
pub fn invalid_temperature() -> Value {
    json!({
        "model": "public-model",
        "messages": [{"role": "user", "content": "Hello!"}],
        "temperature": 3
    })
}

/// A stream whose client did not ask for usage: the adapter asks the upstream anyway.
pub fn text_stream() -> Value {
    json!({
        "model": "public-model",
        "messages": [{"role": "user", "content": "Hello!"}],
        "stream": true
    })
}

pub fn usage_in_stream() -> Value {
    json!({
        "model": "public-model",
        "messages": [
            {"role": "system", "content": "You answer questions about the attached 40-page returns policy. [policy text elided]"},
            {"role": "user", "content": "How long do I have to return an item?"}
        ],
        "stream": true,
        "stream_options": {"include_usage": true}
    })
}

/// Fields the gateway does not model (some OpenAI's, one vendor's own) reach the upstream as
/// sent.
pub fn unknown_fields() -> Value {
    json!({
        "model": "public-model",
        "messages": [{"role": "user", "content": "Say done."}],
        "reasoning_effort": "low",
        "metadata": {"run": "nightly"},
        "store": false,
        "seed": 7,
        "user": "u-42",
        "logit_bias": {"50256": -100},
        "x_vendor_option": {"beam": 2}
    })
}

pub fn embeddings() -> Value {
    json!({
        "model": "public-model",
        "input": ["hello world", "tollgate edge"],
        "dimensions": 8,
        "encoding_format": "base64",
        "user": "u-42"
    })
}
