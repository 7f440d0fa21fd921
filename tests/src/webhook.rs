//! A webhook receiver: an HTTP server on an ephemeral port that records every POST (path and
//! body) and answers 200, standing in for the operator's alerting endpoint.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use bytes::Bytes;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct ReceivedWebhook {
    /// Path and query, e.g. `/alerts`.
    pub path: String,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
    pub raw_body: Bytes,
}

/// A running receiver; stops when dropped.
pub struct WebhookReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<ReceivedWebhook>>>,
    server: JoinHandle<()>,
}

fn lock(received: &Mutex<Vec<ReceivedWebhook>>) -> MutexGuard<'_, Vec<ReceivedWebhook>> {
    received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl WebhookReceiver {
    /// Binds 127.0.0.1:<ephemeral> and starts recording.
    pub async fn start() -> WebhookReceiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind the webhook receiver");
        let addr = listener.local_addr().expect("webhook receiver address");
        let app = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&received));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("e2e: webhook receiver stopped: {error}");
            }
        });
        WebhookReceiver {
            addr,
            received,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/alerts`: the URL to configure as the webhook.
    pub fn url(&self) -> String {
        format!("http://{}/alerts", self.addr)
    }

    /// Every POST so far, oldest first.
    pub fn received(&self) -> Vec<ReceivedWebhook> {
        lock(&self.received).clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn record(
    State(received): State<Arc<Mutex<Vec<ReceivedWebhook>>>>,
    method: axum::http::Method,
    uri: Uri,
    body: Bytes,
) -> StatusCode {
    if method != axum::http::Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    lock(&received).push(ReceivedWebhook {
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), ToString::to_string),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw_body: body,
    });
    StatusCode::OK
}

/// Whether `value` holds, at any depth, an object with `field` equal to the string `expected`
/// (a webhook payload may be the alert itself or wrap it).
pub fn has_string_field(value: &Value, field: &str, expected: &str) -> bool {
    match value {
        Value::Object(map) => {
            map.get(field).and_then(Value::as_str) == Some(expected)
                || map
                    .values()
                    .any(|inner| has_string_field(inner, field, expected))
        }
        Value::Array(items) => items
            .iter()
            .any(|inner| has_string_field(inner, field, expected)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::has_string_field;
    use serde_json::json;

    #[test]
    fn finds_a_field_at_any_depth() {
        assert!(has_string_field(&json!({"kind": "soft"}), "kind", "soft"));
        assert!(has_string_field(
            &json!({"alerts": [{"kind": "hard"}, {"kind": "soft"}]}),
            "kind",
            "soft"
        ));
        assert!(!has_string_field(&json!({"kind": "hard"}), "kind", "soft"));
        assert!(!has_string_field(&json!("soft"), "kind", "soft"));
    }
}
