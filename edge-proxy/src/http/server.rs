//! The edge's HTTP listener. A client holds a socket, and with it a file descriptor, for as long
//! as the edge lets it: so every connection here has a bounded life. Headers must arrive within
//! `header_read_timeout`, a body within `body_read_timeout`, a connection with no request in
//! flight closes after `idle_timeout`, and at most `max_connections` are open at once. At the cap
//! the connection idle the longest makes room for the new one, so a flood of idle sockets can
//! never keep /healthz or a real request out; only when every connection is busy is a new one
//! closed at once.

use crate::metrics::Metrics;
use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// File descriptors kept back from client connections: upstream calls, the spool, the
/// reporter, the config stream, logs.
const RESERVED_FILE_DESCRIPTORS: u64 = 512;
/// Headers hyper parses before it answers a bare 431 itself; the router answers an OpenAI-style
/// 431 above `http::MAX_HEADERS`.
const HYPER_MAX_HEADERS: usize = 1024;
/// Bytes hyper buffers for a request head (and body reads).
const HYPER_MAX_BUFFER_BYTES: usize = 1024 * 1024;
/// Upper bound of the default connection cap, whatever the descriptor limit allows.
const DEFAULT_MAX_CONNECTIONS: u64 = 16_384;
/// Pause after a failed accept (out of descriptors): retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How long a shutdown waits for requests in flight before closing their connections.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(30);

/// How long and how many client connections live.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// The body of a request did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
pub struct BodyReadTimeout(pub Duration);

/// Raises this process's open-file limit to its hard limit (a side effect, once at start) and
/// returns the connection cap it allows: half of what is left after a reserve (the other half
/// is for upstream calls), at most `DEFAULT_MAX_CONNECTIONS`.
pub fn raise_open_file_limit() -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let open_files = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(_) => limit.current,
    }
    .unwrap_or(u64::MAX);
    let cap = open_files.saturating_sub(RESERVED_FILE_DESCRIPTORS) / 2;
    usize::try_from(cap.clamp(16, DEFAULT_MAX_CONNECTIONS)).unwrap_or(16)
}

/// Serves `router` on `listener` until `shutdown`, then lets requests in flight finish (up to
/// `SHUTDOWN_DRAIN`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let connections = Arc::new(Connections::new(limits.max_connections));
    let tasks = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let (connection, evicted) = connections.admit();
        if evicted {
            metrics.connection_shed("evicted");
        }
        let Some(connection) = connection else {
            metrics.connection_shed("refused");
            tracing::debug!(
                max_connections = limits.max_connections,
                "connection cap reached with every connection busy; closing a new one"
            );
            continue;
        };
        // Nagle's algorithm would hold streamed chunks back for the client's delayed ACK.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "setting TCP_NODELAY failed");
        }
        metrics.connection_opened();
        let task = serve_connection(
            stream,
            router.clone(),
            limits,
            Arc::clone(&connection),
            shutdown.clone(),
        );
        let connections = Arc::clone(&connections);
        let metrics = Arc::clone(&metrics);
        tasks.spawn(async move {
            if let Closed::Idle = task.await {
                metrics.connection_shed("idle");
            }
            connections.remove(connection.id);
            metrics.connection_closed();
        });
    }
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_DRAIN, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight {} s after shutdown; closing them",
            SHUTDOWN_DRAIN.as_secs()
        );
    }
}

enum Closed {
    Done,
    Idle,
    Evicted,
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    connection: Arc<Connection>,
    shutdown: CancellationToken,
) -> Closed {
    let tracked = Arc::clone(&connection);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let activity = Activity::begin(Arc::clone(&tracked));
        let request =
            request.map(|body| Body::new(DeadlineBody::new(body, limits.body_read_timeout)));
        let call = router.clone().oneshot(request);
        async move {
            let response = call.await?;
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(TrackedBody {
                    inner: body,
                    _activity: activity,
                })
            }))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUFFER_BYTES);
    builder.http2().timer(TokioTimer::new());
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    let check_every = (limits.idle_timeout / 4).max(Duration::from_millis(100));
    let mut idle_check = tokio::time::interval(check_every);
    let mut draining = false;
    loop {
        tokio::select! {
            result = served.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "client connection ended with an error");
                }
                return Closed::Done;
            }
            // Dropping the connection closes its socket; nothing is in flight on it.
            () = connection.evicted.cancelled() => return Closed::Evicted,
            _ = idle_check.tick() => {
                if connection.idle_for() >= limits.idle_timeout {
                    return Closed::Idle;
                }
            }
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The open connections, so the cap can find the one idle the longest.
struct Connections {
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    max: usize,
    epoch: Instant,
}

struct Connection {
    id: u64,
    epoch: Instant,
    requests_in_flight: AtomicUsize,
    /// Milliseconds since `epoch` at the last request's start or end (or the accept).
    last_active_ms: AtomicU64,
    evicted: CancellationToken,
}

impl Connections {
    fn new(max: usize) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            max: max.max(1),
            epoch: Instant::now(),
        }
    }

    /// Registers a new connection. At the cap, evicts the connection idle the longest to make
    /// room (the `bool`), or, when every connection has a request in flight, refuses (`None`).
    fn admit(&self) -> (Option<Arc<Connection>>, bool) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut evicted = false;
        if open.len() >= self.max {
            let idlest = open
                .values()
                .filter(|connection| connection.requests_in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|connection| connection.last_active_ms.load(Ordering::Relaxed))
                .map(|connection| connection.id);
            let Some(id) = idlest else {
                return (None, false);
            };
            if let Some(connection) = open.remove(&id) {
                connection.evicted.cancel();
                evicted = true;
            }
        }
        let connection = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            epoch: self.epoch,
            requests_in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            evicted: CancellationToken::new(),
        });
        connection.touch();
        open.insert(connection.id, Arc::clone(&connection));
        (Some(connection), evicted)
    }

    fn remove(&self, id: u64) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.remove(&id);
    }
}

impl Connection {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_active_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// How long the connection has had no request in flight.
    fn idle_for(&self) -> Duration {
        if self.requests_in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = self.last_active_ms.load(Ordering::Relaxed);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }
}

/// One request on a connection, from its headers until its response body is done or dropped.
struct Activity(Arc<Connection>);

impl Activity {
    fn begin(connection: Arc<Connection>) -> Self {
        connection.requests_in_flight.fetch_add(1, Ordering::AcqRel);
        connection.touch();
        Self(connection)
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.0.touch();
        self.0.requests_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request body that fails with [`BodyReadTimeout`] once its deadline (counted from the
/// request's arrival) passes. The timer is only set up when the body actually has to wait, so
/// a body that is already in (or empty) costs no timer.
struct DeadlineBody {
    inner: Incoming,
    limit: Duration,
    arrived: tokio::time::Instant,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            arrived: tokio::time::Instant::now(),
            deadline: None,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|result| result.map_err(BoxError::from)));
        }
        let (arrived, limit) = (this.arrived, this.limit);
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(arrived + limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyReadTimeout(this.limit))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request counted as in flight until it is done.
struct TrackedBody {
    inner: Body,
    _activity: Activity,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_idlest_connection_makes_room_and_busy_ones_are_kept() {
        let connections = Connections::new(2);
        let (first, _) = connections.admit();
        let first = first.expect("room");
        let (second, _) = connections.admit();
        let second = second.expect("room");
        first.last_active_ms.store(0, Ordering::Relaxed);
        second.last_active_ms.store(5, Ordering::Relaxed);

        let (third, evicted) = connections.admit();
        assert!(evicted && third.is_some());
        assert!(first.evicted.is_cancelled() && !second.evicted.is_cancelled());

        let _busy = [
            Activity::begin(Arc::clone(&second)),
            Activity::begin(third.expect("room")),
        ];
        let (refused, evicted) = connections.admit();
        assert!(refused.is_none() && !evicted);
    }

    #[test]
    fn a_connection_with_a_request_in_flight_is_never_idle() {
        let connections = Connections::new(4);
        let connection = connections.admit().0.expect("room");
        connection.last_active_ms.store(0, Ordering::Relaxed);
        let activity = Activity::begin(Arc::clone(&connection));
        connection.last_active_ms.store(0, Ordering::Relaxed);
        assert_eq!(connection.idle_for(), Duration::ZERO);
        drop(activity);
        assert_eq!(connection.requests_in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_default_cap_fits_the_open_file_limit() {
        let cap = raise_open_file_limit();
        assert!((16..=16_384).contains(&cap), "{cap}");
    }
}
