//! Edges' join tokens are checked from the request headers before a message body is read:
//! decoding a 16 MiB usage report for a caller who turns out to have no token would let anyone
//! who can reach the port spend the plane's memory and CPU.

use crate::auth::verify_join_token;
use sqlx::PgPool;
use std::convert::Infallible;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;

/// Wraps an edge-facing gRPC service: unauthenticated calls are answered `UNAUTHENTICATED`
/// without touching the body.
#[derive(Debug, Clone)]
pub struct JoinTokenGate<S> {
    inner: S,
    pool: PgPool,
}

impl<S> JoinTokenGate<S> {
    pub fn new(inner: S, pool: PgPool) -> Self {
        Self { inner, pool }
    }
}

impl<S: NamedService> NamedService for JoinTokenGate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for JoinTokenGate<S>
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
        Box::pin(async move {
            let metadata = MetadataMap::from_headers(request.headers().clone());
            if let Err(err) = verify_join_token(&pool, &metadata).await {
                return Ok(tonic::Status::from(err).into_http());
            }
            inner.call(request).await
        })
    }
}
