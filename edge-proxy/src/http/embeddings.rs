//! `POST /v1/embeddings`. PLACEHOLDER until the endpoint lands.

use crate::error::GatewayError;

pub async fn create() -> GatewayError {
    GatewayError::UnknownRoute("/v1/embeddings".to_owned())
}
