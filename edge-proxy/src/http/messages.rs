//! `POST /v1/messages` (Anthropic's Messages API inbound). PLACEHOLDER until the endpoint lands.

use crate::error::GatewayError;

pub async fn create() -> GatewayError {
    GatewayError::UnknownRoute("/v1/messages".to_owned())
}
