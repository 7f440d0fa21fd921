//! The HTTP mechanics every adapter shares: send a request and wait for its headers within the
//! right deadline, turn a non-2xx answer into a redacted `UpstreamStatus`, read a JSON body
//! within the total deadline, and run an SSE body through an adapter's `StreamTranslator`
//! with first-token, idle and total deadlines. Adapters only build requests and translate.

use super::secret::ApiKey;
use super::sse::{SseDecoder, SseEvent};
use super::{ChunkStream, ModelTarget, ProviderError, TimeoutPhase};
use crate::api::chat::ChatCompletionChunk;
use bytes::Bytes;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;
use tokio::time::Instant;

/// Largest upstream error body we read to extract a message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// Longest upstream error message we repeat to the client.
const MAX_ERROR_MESSAGE_CHARS: usize = 500;

/// Turns one upstream's SSE events into OpenAI chunks. One instance per stream; it keeps
/// whatever state the protocol needs (ids, open tool calls, usage so far).
pub trait StreamTranslator: Send + 'static {
    /// One event in; chunks appended to `out`. `Err` means the upstream reported an error or
    /// sent something unreadable: the stream ends with that reason.
    fn on_event(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<ChatCompletionChunk>,
    ) -> Result<Flow, String>;

    /// The upstream closed the body. `Ok` when that is a normal end for this protocol (it may
    /// append final chunks), `Err` with the reason when the stream was cut short.
    fn on_close(&mut self, out: &mut Vec<ChatCompletionChunk>) -> Result<(), String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// The protocol's end marker arrived; nothing after it is read.
    Done,
}

/// Whether the call streams: it decides which deadline bounds the wait for headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    Complete,
    Stream,
}

/// One upstream call's identity: who we are calling, with which secret, under which deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Upstream<'a> {
    /// The provider's configured name, for error messages.
    pub provider: &'a str,
    pub secret: &'a ApiKey,
    pub target: &'a ModelTarget,
}

/// An accepted upstream call (2xx headers received).
#[derive(Debug)]
pub struct Call {
    provider: String,
    secret: ApiKey,
    target: ModelTarget,
    response: reqwest::Response,
    started: Instant,
}

impl Upstream<'_> {
    /// Sends `request` (built on `target.http`) and waits for a 2xx status. Streams wait at
    /// most the first-token deadline, complete calls the total one; connecting is bounded by
    /// the client's connect timeout.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        mode: CallMode,
    ) -> Result<Call, ProviderError> {
        let started = Instant::now();
        let deadlines = &self.target.deadlines;
        let (wait, phase) = match mode {
            CallMode::Stream if deadlines.first_token < deadlines.total => {
                (deadlines.first_token, TimeoutPhase::FirstToken)
            }
            _ => (deadlines.total, TimeoutPhase::Total),
        };
        let response = tokio::time::timeout(wait, request.send())
            .await
            .map_err(|_| self.timed_out(phase))?
            .map_err(|err| self.send_failed(&err))?;
        let status = response.status();
        if !status.is_success() {
            let header_retry = retry_after_secs(response.headers());
            let (message, body_retry) = self
                .error_details(status, response, started + deadlines.total)
                .await;
            return Err(ProviderError::UpstreamStatus {
                provider: self.provider.to_owned(),
                status: status.as_u16(),
                message,
                retry_after_secs: header_retry.or(body_retry),
            });
        }
        Ok(Call {
            provider: self.provider.to_owned(),
            secret: self.secret.clone(),
            target: self.target.clone(),
            response,
            started,
        })
    }

    pub fn timed_out(&self, phase: TimeoutPhase) -> ProviderError {
        timeout(self.provider, self.target, phase)
    }

    /// A response the adapter could not understand, redacted.
    pub fn invalid(&self, reason: impl AsRef<str>) -> ProviderError {
        ProviderError::InvalidResponse {
            provider: self.provider.to_owned(),
            reason: self.secret.redact(reason.as_ref()),
        }
    }

    fn send_failed(&self, err: &reqwest::Error) -> ProviderError {
        if err.is_connect() && err.is_timeout() {
            return self.timed_out(TimeoutPhase::Connect);
        }
        if err.is_timeout() {
            return self.timed_out(TimeoutPhase::Total);
        }
        let reason = if err.is_connect() {
            "connection failed".to_owned()
        } else {
            self.secret.redact(&without_url(err))
        };
        ProviderError::Unreachable {
            provider: self.provider.to_owned(),
            reason,
        }
    }

    /// The upstream's own error message (`error.message` in OpenAI's, Anthropic's and
    /// Gemini's error bodies alike), redacted, and a retry delay the body may carry (Gemini's
    /// `RetryInfo.retryDelay`, used when there is no Retry-After header). For auth failures only
    /// the status is kept: upstreams echo parts of the key there. The body is read with the
    /// idle gap between pieces and never past the call's total deadline; a body cut short by
    /// either yields what arrived.
    async fn error_details(
        &self,
        status: reqwest::StatusCode,
        response: reqwest::Response,
        total_deadline: Instant,
    ) -> (String, Option<u64>) {
        if matches!(status.as_u16(), 401 | 403) {
            return (
                "the upstream rejected the gateway's credentials for this provider".to_owned(),
                None,
            );
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        loop {
            let deadline = (Instant::now() + self.target.deadlines.idle).min(total_deadline);
            let Ok(Some(Ok(piece))) = tokio::time::timeout_at(deadline, stream.next()).await else {
                break;
            };
            body.extend_from_slice(&piece);
            if body.len() >= MAX_ERROR_BODY_BYTES {
                break;
            }
        }
        let json = serde_json::from_slice::<Value>(&body).ok();
        // Gemini answers some errors as a one-element array.
        let error = json.as_ref().map(|json| json.get(0).unwrap_or(json));
        let retry = error.and_then(body_retry_delay_secs);
        let text = error
            .and_then(|error| error.pointer("/error/message").and_then(Value::as_str))
            .map_or_else(
                || String::from_utf8_lossy(&body).into_owned(),
                str::to_owned,
            );
        // Redacted before it is cut, so a key straddling the cut cannot leave a prefix behind.
        let text: String = self
            .secret
            .redact(&text)
            .chars()
            .take(MAX_ERROR_MESSAGE_CHARS)
            .collect();
        let message = if text.trim().is_empty() {
            status.canonical_reason().unwrap_or("no message").to_owned()
        } else {
            text
        };
        (message, retry)
    }
}

impl Call {
    /// The whole body, within what is left of the total deadline.
    pub async fn body(self) -> Result<Bytes, ProviderError> {
        let deadline = self.started + self.target.deadlines.total;
        match tokio::time::timeout_at(deadline, self.response.bytes()).await {
            Err(_) => Err(timeout(&self.provider, &self.target, TimeoutPhase::Total)),
            Ok(Err(err)) => Err(ProviderError::Unreachable {
                provider: self.provider.clone(),
                reason: self.secret.redact(&without_url(&err)),
            }),
            Ok(Ok(bytes)) => Ok(bytes),
        }
    }

    /// The body parsed as `T`; `what` names the expected shape in the error ("a chat
    /// completion").
    pub async fn json<T: DeserializeOwned>(self, what: &str) -> Result<T, ProviderError> {
        let provider = self.provider.clone();
        let secret = self.secret.clone();
        let bytes = self.body().await?;
        serde_json::from_slice(&bytes).map_err(|err| ProviderError::InvalidResponse {
            provider,
            reason: secret.redact(&format!("not {what}: {err}")),
        })
    }

    /// The SSE body as OpenAI chunks. The first chunk must come within the first-token
    /// deadline, every later piece of body within the idle gap, and everything within the total
    /// deadline; whichever fires ends the stream with a `Timeout` naming its phase. Dropping
    /// the stream drops the upstream connection: that is how a client hang-up cancels the call.
    pub fn chunks<T: StreamTranslator>(self, mut translator: T) -> ChunkStream {
        let Call {
            provider,
            secret,
            target,
            response,
            started,
        } = self;
        let mut bytes = response.bytes_stream();
        let deadlines = target.deadlines;
        let total_deadline = started + deadlines.total;
        let stream = async_stream::stream! {
            let interrupted = |reason: &str| ProviderError::StreamInterrupted {
                provider: provider.clone(),
                reason: secret.redact(reason),
            };
            let mut decoder = SseDecoder::new();
            let mut out: Vec<ChatCompletionChunk> = Vec::new();
            let mut produced_any = false;
            let mut last_activity = started;
            loop {
                let (phase_deadline, phase) = if produced_any {
                    (last_activity + deadlines.idle, TimeoutPhase::Idle)
                } else {
                    (started + deadlines.first_token, TimeoutPhase::FirstToken)
                };
                let (deadline, phase) = if total_deadline <= phase_deadline {
                    (total_deadline, TimeoutPhase::Total)
                } else {
                    (phase_deadline, phase)
                };
                let piece = match tokio::time::timeout_at(deadline, bytes.next()).await {
                    Err(_) => {
                        yield Err(timeout(&provider, &target, phase));
                        return;
                    }
                    Ok(Some(Err(err))) => {
                        yield Err(interrupted(&without_url(&err)));
                        return;
                    }
                    Ok(None) => {
                        let closed = translator.on_close(&mut out);
                        for chunk in out.drain(..) {
                            yield Ok(chunk);
                        }
                        if let Err(reason) = closed {
                            yield Err(interrupted(&reason));
                        }
                        return;
                    }
                    Ok(Some(Ok(piece))) => piece,
                };
                last_activity = Instant::now();
                let events = match decoder.feed(&piece) {
                    Ok(events) => events,
                    Err(err) => {
                        yield Err(interrupted(&err.to_string()));
                        return;
                    }
                };
                for event in &events {
                    let flow = translator.on_event(event, &mut out);
                    produced_any |= !out.is_empty();
                    for chunk in out.drain(..) {
                        yield Ok(chunk);
                    }
                    match flow {
                        Ok(Flow::Continue) => {}
                        Ok(Flow::Done) => return,
                        Err(reason) => {
                            yield Err(interrupted(&reason));
                            return;
                        }
                    }
                }
            }
        };
        Box::pin(stream)
    }
}

fn timeout(provider: &str, target: &ModelTarget, phase: TimeoutPhase) -> ProviderError {
    ProviderError::Timeout {
        provider: provider.to_owned(),
        phase,
        after_ms: u64::try_from(target.deadlines.of(phase).as_millis()).unwrap_or(u64::MAX),
    }
}

/// `Retry-After` as whole seconds (the delta-seconds form; HTTP dates are rare from LLM APIs
/// and ignored).
fn retry_after_secs(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(|secs| Duration::from_secs_f64(secs.min(86_400.0)).as_secs().max(1))
}

/// Google's `RetryInfo` detail (`"retryDelay": "29s"`) in whole seconds, at least 1.
fn body_retry_delay_secs(error: &Value) -> Option<u64> {
    error
        .pointer("/error/details")?
        .as_array()?
        .iter()
        .filter_map(|detail| detail.get("retryDelay")?.as_str())
        .find_map(|delay| delay.strip_suffix('s')?.parse::<f64>().ok())
        .filter(|secs| secs.is_finite() && *secs >= 0.0)
        .map(|secs| Duration::from_secs_f64(secs.min(86_400.0)).as_secs().max(1))
}

/// reqwest's message without the URL, which may carry a key in its query string.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "<upstream>");
    }
    text
}

/// An SSE `data:` payload parsed as JSON, or the reason it is not.
pub fn event_json<T: DeserializeOwned>(event: &SseEvent) -> Result<T, String> {
    serde_json::from_str(&event.data).map_err(|err| {
        let upstream_error = serde_json::from_str::<Value>(&event.data)
            .ok()
            .and_then(|json| {
                json.pointer("/error/message")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
        upstream_error.unwrap_or_else(|| format!("unparseable event: {err}"))
    })
}

#[cfg(test)]
mod tests;
