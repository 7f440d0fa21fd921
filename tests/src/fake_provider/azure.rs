//! Azure OpenAI: OpenAI's bodies addressed by deployment
//! (`/openai/deployments/{deployment}/chat/completions?api-version=...`), an `api-key` header,
//! Azure's own error shape (`{"error": {"code", "message"}}`), content-filter annotations, and a
//! stream that opens with a prompt-filter chunk whose id and model are empty.

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::openai;
use super::reply::Reply;
use super::wire::{Ask, Incoming, StreamBody, Wire};

/// The model version Azure names in responses (it answers with the deployed model, not the
/// deployment's name).
pub(crate) const AZURE_CHAT_MODEL: &str = "gpt-4o-mini-2024-07-18";

/// The first API version that accepts `stream_options` (ISO dates compare as strings).
const STREAM_OPTIONS_SINCE: &str = "2024-09-01";

pub(crate) struct Azure;

impl Wire for Azure {
    fn authenticate(&self, request: &Incoming, expected_key: Option<&str>) -> Result<(), Response> {
        if request.query("api-version").is_none_or(str::is_empty) {
            return Err(error(StatusCode::NOT_FOUND, "404", "Resource not found"));
        }
        let key = request.header("api-key").filter(|key| !key.is_empty());
        match (key, expected_key) {
            (None, _) => Err(error(
                StatusCode::UNAUTHORIZED,
                "401",
                "Access denied due to missing subscription key. Make sure to include \
                 subscription key when making requests to an API.",
            )),
            (Some(key), Some(expected)) if key != expected => Err(error(
                StatusCode::UNAUTHORIZED,
                "401",
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure \
                 to provide a valid key for an active subscription and use a correct regional \
                 API endpoint for your resource.",
            )),
            _ => Ok(()),
        }
    }

    fn chat_ask(&self, request: &Incoming, body: &Value) -> Result<Ask, Response> {
        // Azure learnt `stream_options` in 2024-09-01-preview; older versions refuse it.
        let version = request.query("api-version").unwrap_or_default();
        if body.get("stream_options").is_some() && version < STREAM_OPTIONS_SINCE {
            return Err(openai::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                "Unrecognized request argument supplied: stream_options",
            ));
        }
        let mut checked = body.clone();
        // The deployment in the path names the model; a body `model` is optional.
        checked["model"] = json!(request.path_model.clone().unwrap_or_default());
        openai::chat_validate(&checked).map_err(|message| {
            openai::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &message,
            )
        })?;
        Ok(openai::ask(AZURE_CHAT_MODEL.to_owned(), body))
    }

    fn completion(&self, reply: &Reply) -> Value {
        openai::completion(reply, true)
    }

    fn stream(&self, reply: Reply, ask: &Ask, _request: &Incoming) -> StreamBody {
        openai::stream(reply, ask.include_usage, true)
    }

    fn malformed_event(&self) -> Bytes {
        Bytes::from_static(b"data: {\"id\": \"chatcmpl-broken\", \"choices\": [{\"delta\": \n\n")
    }

    fn error_event(&self, status: StatusCode, message: &str) -> Bytes {
        openai::error_event(status, message)
    }

    fn embeddings(&self, request: &Incoming, body: &Value) -> Result<Value, Response> {
        let deployment = request.path_model.clone().unwrap_or_default();
        openai::embeddings(body, &deployment).map_err(|message| {
            openai::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                None,
                &message,
            )
        })
    }

    fn error(&self, status: StatusCode, message: &str) -> Response {
        error(status, status.as_str(), message)
    }

    fn rate_limited(&self, retry_after_secs: u64) -> Response {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "429",
            &format!(
                "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version \
                 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing \
                 tier. Please retry after {retry_after_secs} seconds."
            ),
        );
        response
            .headers_mut()
            .insert("retry-after", retry_after_secs.into());
        response
    }
}

/// Azure's own error shape, used for gateway-level errors (auth, routing, throttling).
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    (
        status,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
