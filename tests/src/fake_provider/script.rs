//! How the fake misbehaves, whatever wire format it speaks: errors in the provider's own shape,
//! latency before the headers, silence after them, gaps, slow long streams, cuts and broken
//! JSON. The pacing applies to the body pieces a format produced; a guard in the body records
//! when the other side hangs up before the body finished.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;

use super::wire::Events;
use super::{Disconnect, Shared};

/// How long a cut response stays open after its last piece, so the pieces are surely flushed
/// to the client before the connection is aborted.
const CUT_GRACE: Duration = Duration::from_millis(200);

/// How the fake answers, until told otherwise. Every variant applies to every wire format;
/// errors come in that provider's own error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// A correct answer: [`super::FAKE_CONTENT`], or a tool call when the request offers tools
    /// (and does not forbid calling them, and does not end with a tool result).
    Normal,
    /// Answer every request with this status and this raw body (`application/json`).
    Status { code: u16, body: String },
    /// Answer with this status and message, in the provider's own error shape.
    Error { status: u16, message: String },
    /// 429 in the provider's own shape, with `Retry-After: <secs>` where the provider sends
    /// one (OpenAI, Azure, Anthropic; Gemini puts a `RetryInfo` in the error details instead).
    RateLimited { retry_after_secs: u64 },
    /// Wait this long before sending the response headers, then answer normally.
    Latency(Duration),
    /// Send the headers at once, then wait this long before the first body piece (the first
    /// SSE event, or the whole JSON body).
    FirstEventDelay(Duration),
    /// Send `events` body pieces, then stay silent for `gap`, then send the rest.
    GapAfter { events: usize, gap: Duration },
    /// A long text reply of `chunks` pieces (one token each). Streams send one piece every
    /// `every`; a non-streaming answer arrives after `chunks × every`.
    SlowStream { chunks: usize, every: Duration },
    /// Send this many body pieces (for streams: SSE events, the first one counting), then abort
    /// the connection with no end marker. A non-streaming body is cut half-way.
    CutStreamAfter(usize),
    /// 200 with a body that is not valid JSON; for streams, the second event is broken.
    MalformedJson,
    /// Streams send `events` events, then the provider's own in-stream error event (e.g.
    /// Anthropic's `overloaded_error`) with this status's error type and this message, and
    /// end. Non-streaming answers are [`Behavior::Error`].
    ErrorEventAfter {
        events: usize,
        status: u16,
        message: String,
    },
}

impl Behavior {
    /// Output pieces the reply has, when the script decides it (slow streams).
    pub(crate) fn text_pieces(&self) -> Option<usize> {
        match self {
            Behavior::SlowStream { chunks, .. } => Some(*chunks),
            _ => None,
        }
    }

    /// How long to wait before the response headers.
    pub(crate) fn before_headers(&self, stream: bool) -> Duration {
        match self {
            Behavior::Latency(delay) => *delay,
            Behavior::SlowStream { chunks, every } if !stream => {
                every.saturating_mul(u32::try_from(*chunks).unwrap_or(u32::MAX))
            }
            _ => Duration::ZERO,
        }
    }

    /// How the body pieces are paced once the headers are sent.
    pub(crate) fn pacing(&self, stream: bool) -> Pacing {
        let mut pacing = Pacing::default();
        match self {
            Behavior::FirstEventDelay(delay) => pacing.first_delay = *delay,
            Behavior::GapAfter { events, gap } => pacing.gap = Some((*events, *gap)),
            Behavior::SlowStream { every, .. } if stream => pacing.every = *every,
            Behavior::CutStreamAfter(events) => pacing.cut_after = Some(*events),
            _ => {}
        }
        pacing
    }
}

/// When body pieces go out.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pacing {
    pub first_delay: Duration,
    /// Pause between two pieces.
    pub every: Duration,
    /// After this many pieces, this much silence.
    pub gap: Option<(usize, Duration)>,
    /// Abort the connection after this many pieces.
    pub cut_after: Option<usize>,
}

/// Records a [`Disconnect`] when dropped while armed: the handler future or the body stream
/// it lives in was dropped before the response finished, i.e. the other side hung up.
pub(crate) struct DisconnectGuard {
    shared: Arc<Shared>,
    path: String,
    events_sent: usize,
    armed: bool,
}

impl DisconnectGuard {
    pub(crate) fn new(shared: Arc<Shared>, path: String) -> DisconnectGuard {
        DisconnectGuard {
            shared,
            path,
            events_sent: 0,
            armed: true,
        }
    }

    /// The response is complete (or the fake itself ended it): nothing to record.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for DisconnectGuard {
    fn drop(&mut self) {
        if self.armed {
            self.shared.record_disconnect(Disconnect {
                path: std::mem::take(&mut self.path),
                at: Instant::now(),
                events_sent: self.events_sent,
            });
        }
    }
}

/// A response body sending `events` as `pacing` says, guarded by `guard`.
pub(crate) fn paced_body(events: Events, pacing: Pacing, mut guard: DisconnectGuard) -> Body {
    let stream = async_stream::stream! {
        if !pacing.first_delay.is_zero() {
            tokio::time::sleep(pacing.first_delay).await;
        }
        for event in events {
            let sent = guard.events_sent;
            if pacing.cut_after == Some(sent) {
                break;
            }
            if sent > 0 && !pacing.every.is_zero() {
                tokio::time::sleep(pacing.every).await;
            }
            if let Some((after, gap)) = pacing.gap
                && after == sent
            {
                tokio::time::sleep(gap).await;
            }
            guard.events_sent += 1;
            yield Ok::<Bytes, std::io::Error>(event);
        }
        if pacing.cut_after.is_some() {
            tokio::time::sleep(CUT_GRACE).await;
            guard.disarm();
            yield Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the fake provider cut the response",
            ));
            return;
        }
        guard.disarm();
    };
    Body::from_stream(stream)
}
