//! What an edge must show before the plane reads a message body: its join token (checked from
//! the headers: decoding a 16 MiB usage report for a caller who turns out to have no token would
//! let anyone who can reach the port spend the plane's memory and CPU) and, when the plane
//! runs with `--tls-client-ca`, a client certificate that CA signed (mTLS).

use crate::auth::verify_join_token;
use sqlx::PgPool;
use std::convert::Infallible;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Wraps an edge-facing gRPC service: unauthenticated calls are answered `UNAUTHENTICATED`
/// without touching the body.
#[derive(Debug, Clone)]
pub struct EdgeGate<S> {
    inner: S,
    /// Checks the join token when set; services that check it themselves leave it out.
    pool: Option<PgPool>,
    require_client_cert: bool,
}

impl<S> EdgeGate<S> {
    /// Join token from the headers, plus a client certificate when `require_client_cert`.
    pub fn new(inner: S, pool: PgPool, require_client_cert: bool) -> Self {
        Self {
            inner,
            pool: Some(pool),
            require_client_cert,
        }
    }

    /// Only the client certificate (a pass-through when `require_client_cert` is false).
    pub fn client_cert_only(inner: S, require_client_cert: bool) -> Self {
        Self {
            inner,
            pool: None,
            require_client_cert,
        }
    }
}

/// Whether the TLS handshake verified a client certificate (against `--tls-client-ca`).
fn has_client_cert<B>(request: &http::Request<B>) -> bool {
    request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(TlsConnectInfo::peer_certs)
        .is_some_and(|certs| !certs.is_empty())
}

impl<S: NamedService> NamedService for EdgeGate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for EdgeGate<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http::Response<Body>, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The clone is ready only after its own poll_ready; keep the polled one for this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let pool = self.pool.clone();
        let certified = !self.require_client_cert || has_client_cert(&request);
        Box::pin(async move {
            if !certified {
                let status = tonic::Status::unauthenticated(
                    "this control plane requires edges to present a client certificate (mTLS)",
                );
                return Ok(status.into_http());
            }
            if let Some(pool) = pool {
                let metadata = MetadataMap::from_headers(request.headers().clone());
                if let Err(err) = verify_join_token(&pool, &metadata).await {
                    return Ok(tonic::Status::from(err).into_http());
                }
            }
            inner.call(request).await
        })
    }
}
