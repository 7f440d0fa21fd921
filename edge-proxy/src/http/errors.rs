//! The single mapping from gateway errors to HTTP status and OpenAI error JSON
//! (`{"error": {"message", "type", "param", "code"}}`). No other code picks a status.

use crate::error::{FieldProblem, GatewayError};
use crate::providers::ProviderError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::InvalidField { .. } | Self::BodyRead(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::MissingApiKey | Self::InvalidApiKey | Self::ExpiredApiKey => {
                StatusCode::UNAUTHORIZED
            }
            Self::ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            Self::ModelNotFound(_) | Self::UnknownRoute(_) => StatusCode::NOT_FOUND,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotReady | Self::UsageSpoolFull => StatusCode::SERVICE_UNAVAILABLE,
            Self::Provider(ProviderError::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
            Self::Provider(_) => StatusCode::BAD_GATEWAY,
        }
    }

    pub fn body(&self) -> ErrorBody {
        let (kind, code, param) = match self {
            Self::MalformedJson(_) => ("invalid_request_error", "invalid_json", None),
            Self::InvalidField { param, problem, .. } => {
                let code = match problem {
                    FieldProblem::Missing => "missing_field",
                    FieldProblem::WrongType => "invalid_type",
                    FieldProblem::InvalidValue => "invalid_value",
                };
                ("invalid_request_error", code, Some(param.clone()))
            }
            Self::BodyRead(_) => ("invalid_request_error", "invalid_body", None),
            Self::MissingApiKey | Self::InvalidApiKey | Self::ExpiredApiKey => {
                ("invalid_request_error", "invalid_api_key", None)
            }
            Self::ModelNotAllowed(_) => (
                "permission_error",
                "model_not_allowed",
                Some("model".to_owned()),
            ),
            Self::ModelNotFound(_) => (
                "invalid_request_error",
                "model_not_found",
                Some("model".to_owned()),
            ),
            Self::BodyTooLarge { .. } => ("invalid_request_error", "request_too_large", None),
            Self::UnknownRoute(_) => ("invalid_request_error", "unknown_url", None),
            Self::NotReady => ("service_unavailable", "not_ready", None),
            Self::UsageSpoolFull => ("service_unavailable", "usage_spool_full", None),
            Self::Provider(err) => ("upstream_error", provider_code(err), None),
        };
        ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                kind,
                param,
                code: Some(code),
            },
        }
    }
}

fn provider_code(err: &ProviderError) -> &'static str {
    match err {
        ProviderError::Timeout { .. } => "upstream_timeout",
        ProviderError::Unreachable { .. } => "upstream_unreachable",
        ProviderError::UpstreamStatus { .. }
        | ProviderError::InvalidResponse { .. }
        | ProviderError::StreamInterrupted { .. } => "upstream_error",
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_maps_to_its_openai_status_and_code() {
        let cases = [
            (GatewayError::MalformedJson("x".into()), 400, "invalid_json"),
            (GatewayError::InvalidApiKey, 401, "invalid_api_key"),
            (
                GatewayError::ModelNotAllowed("m".into()),
                403,
                "model_not_allowed",
            ),
            (
                GatewayError::ModelNotFound("m".into()),
                404,
                "model_not_found",
            ),
            (
                GatewayError::BodyTooLarge { limit_bytes: 1 },
                413,
                "request_too_large",
            ),
            (GatewayError::NotReady, 503, "not_ready"),
            (
                GatewayError::Provider(ProviderError::Timeout {
                    provider: "p".into(),
                    after_ms: 5,
                }),
                504,
                "upstream_timeout",
            ),
            (
                GatewayError::Provider(ProviderError::UpstreamStatus {
                    provider: "p".into(),
                    status: 500,
                    message: "boom".into(),
                }),
                502,
                "upstream_error",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.body().error.code, Some(code));
        }
    }
}
