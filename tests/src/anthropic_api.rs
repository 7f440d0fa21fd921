//! `POST /v1/messages` on the edge, as Anthropic's SDKs call it (`x-api-key`,
//! `anthropic-version`), and assertions on Anthropic's wire shapes: the message JSON, the
//! error JSON and the SSE event sequence.

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Value, json};

use crate::gateway_client::{GatewayClient, HttpReply, StreamedBody, buffer};

/// The `anthropic-version` the tests send, as Anthropic's SDKs do.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A minimal Messages API request: one user message.
pub fn messages_body(model: &str, content: &str, max_tokens: u32) -> Value {
    json!({
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": content}],
    })
}

/// One server-sent event of an Anthropic stream.
#[derive(Debug, Clone)]
pub struct AnthropicEvent {
    /// The `event:` name.
    pub name: Option<String>,
    /// The `data:` payload as JSON (`Null` when it is not JSON).
    pub data: Value,
}

/// An Anthropic stream read to its end (or to the transport error that cut it).
#[derive(Debug, Clone)]
pub struct AnthropicStream {
    pub status: u16,
    pub headers: HeaderMap,
    pub raw: String,
    pub events: Vec<AnthropicEvent>,
    pub transport_error: Option<String>,
}

impl GatewayClient {
    fn messages_request(&self, key: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(self.url("/v1/messages"))
            .header(CONTENT_TYPE, "application/json")
            .header("anthropic-version", ANTHROPIC_VERSION)
            .body(body.to_string());
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request
    }

    /// POST /v1/messages with `x-api-key`, buffered.
    pub async fn messages(&self, key: Option<&str>, body: &Value) -> anyhow::Result<HttpReply> {
        buffer(self.messages_request(key, body).send().await?).await
    }

    /// POST /v1/messages and read the response as Anthropic server-sent events, to the end.
    pub async fn messages_stream(
        &self,
        key: Option<&str>,
        body: &Value,
    ) -> anyhow::Result<AnthropicStream> {
        let response = self.messages_request(key, body).send().await?;
        let body = StreamedBody::read(response).await;
        Ok(AnthropicStream {
            events: named_events(&body.raw),
            status: body.status,
            headers: body.headers,
            raw: body.raw,
            transport_error: body.transport_error,
        })
    }
}

/// Events with their `event:` names; multi-line data joined with `\n`.
fn named_events(raw: &str) -> Vec<AnthropicEvent> {
    raw.replace("\r\n", "\n")
        .split("\n\n")
        .filter_map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            (name.is_some() || !data.is_empty()).then(|| AnthropicEvent {
                name,
                data: serde_json::from_str(&data.join("\n")).unwrap_or(Value::Null),
            })
        })
        .collect()
}

impl AnthropicStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// `data.type` of every event, in order.
    pub fn types(&self) -> Vec<String> {
        self.events
            .iter()
            .map(|event| event.data["type"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    /// The first event of type `kind`.
    #[track_caller]
    pub fn first(&self, kind: &str) -> &Value {
        &self
            .events
            .iter()
            .find(|event| event.data["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} event in:\n{}", self.raw))
            .data
    }

    /// All `text_delta` texts concatenated.
    pub fn text(&self) -> String {
        self.deltas("text_delta", "text")
    }

    /// All `input_json_delta` fragments concatenated (one tool call's input JSON).
    pub fn tool_input_json(&self) -> String {
        self.deltas("input_json_delta", "partial_json")
    }

    fn deltas(&self, kind: &str, field: &str) -> String {
        self.events
            .iter()
            .filter(|event| event.data["type"] == "content_block_delta")
            .filter(|event| event.data["delta"]["type"] == kind)
            .filter_map(|event| event.data["delta"][field].as_str())
            .collect()
    }

    /// Asserts a complete Anthropic stream: 200 `text/event-stream`; every event's name equals
    /// its `data.type`; `message_start` first (an assistant message with an id, empty
    /// content and input usage); then content blocks, each `content_block_start`, its deltas
    /// (index matching), `content_block_stop`, with indexes 0, 1, ...; then one
    /// `message_delta` with a stop reason and output usage; `message_stop` last. `ping` may
    /// appear anywhere after `message_start`.
    #[track_caller]
    pub fn assert_event_order(&self) {
        let raw = &self.raw;
        assert_eq!(self.status, 200, "stream status; body:\n{raw}");
        assert!(
            self.header("content-type")
                .is_some_and(|value| value.starts_with("text/event-stream")),
            "content-type {:?}",
            self.header("content-type")
        );
        assert!(
            self.transport_error.is_none(),
            "stream broke: {:?}\n{raw}",
            self.transport_error
        );
        for event in &self.events {
            assert_eq!(
                event.name.as_deref(),
                event.data["type"].as_str(),
                "event name must equal data.type:\n{raw}"
            );
        }
        let events: Vec<&Value> = self
            .events
            .iter()
            .map(|event| &event.data)
            .filter(|data| data["type"] != "ping")
            .collect();
        assert!(events.len() >= 3, "too few events:\n{raw}");
        let start = events[0];
        assert_eq!(start["type"], "message_start", "first event:\n{raw}");
        let message = &start["message"];
        assert!(
            message["id"]
                .as_str()
                .is_some_and(|id| id.starts_with("msg_")),
            "message id in {start}"
        );
        assert_eq!(message["type"], "message", "{start}");
        assert_eq!(message["role"], "assistant", "{start}");
        assert_eq!(message["content"], json!([]), "{start}");
        assert!(message["usage"]["input_tokens"].is_u64(), "{start}");

        let last = events.len() - 1;
        assert_eq!(events[last]["type"], "message_stop", "last event:\n{raw}");
        let delta = events[last - 1];
        assert_eq!(
            delta["type"], "message_delta",
            "before message_stop:\n{raw}"
        );
        assert!(delta["delta"]["stop_reason"].is_string(), "{delta}");
        assert!(delta["usage"]["output_tokens"].is_u64(), "{delta}");

        let mut open: Option<u64> = None;
        let mut next_index = 0;
        for event in &events[1..last - 1] {
            let index = event["index"].as_u64();
            match event["type"].as_str() {
                Some("content_block_start") => {
                    assert!(open.is_none(), "block started inside a block:\n{raw}");
                    assert_eq!(index, Some(next_index), "block index:\n{raw}");
                    assert!(event["content_block"]["type"].is_string(), "{event}");
                    open = index;
                    next_index += 1;
                }
                Some("content_block_delta") => {
                    assert!(
                        open.is_some() && index == open,
                        "delta outside its block:\n{raw}"
                    );
                }
                Some("content_block_stop") => {
                    assert!(
                        open.is_some() && index == open,
                        "stop outside its block:\n{raw}"
                    );
                    open = None;
                }
                other => panic!("unexpected event {other:?} between start and end:\n{raw}"),
            }
        }
        assert!(open.is_none(), "a block was never stopped:\n{raw}");
    }
}

/// Asserts an Anthropic error response: `status`, `{"type": "error", "error": {"type":
/// error_type, "message": non-empty}}`. Returns the `error` object.
#[track_caller]
pub fn assert_anthropic_error(reply: &HttpReply, status: u16, error_type: &str) -> Value {
    assert_eq!(reply.status, status, "status; body: {}", reply.body);
    let body = reply.json();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], error_type, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "error.message in {body}"
    );
    body["error"].clone()
}

#[cfg(test)]
mod tests {
    use super::named_events;

    #[test]
    fn named_events_keep_the_event_name() {
        let events = named_events(
            "event: ping\ndata: {\"type\": \"ping\"}\n\nevent: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n",
        );
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].name.as_deref(), Some("ping"));
        assert_eq!(events[1].data["type"], "message_stop");
    }
}
