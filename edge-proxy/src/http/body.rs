//! Validate phase, part one: read the request body without ever holding more than the limit.

use super::server::BodyReadTimeout;
use crate::error::GatewayError;
use axum::body::Body;
use axum::http::HeaderMap;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

pub async fn read_limited(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    let too_large = GatewayError::BodyTooLarge { limit_bytes: limit };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large);
    }
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(body_error)?;
        if buffer.len() + piece.len() > limit {
            return Err(too_large);
        }
        buffer.extend_from_slice(&piece);
    }
    Ok(buffer.freeze())
}

/// A body read failure as the client sees it: its own slowness (408) or a broken body (400).
fn body_error(err: axum::Error) -> GatewayError {
    let inner = err.into_inner();
    match inner.downcast_ref::<BodyReadTimeout>() {
        Some(BodyReadTimeout(limit)) => GatewayError::BodyReadTimeout {
            seconds: limit.as_secs(),
        },
        None => GatewayError::BodyRead(inner.to_string()),
    }
}
