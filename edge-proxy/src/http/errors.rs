//! The single mapping from gateway errors to HTTP status and error JSON: OpenAI's
//! (`{"error": {"message", "type", "param", "code"}}`) and, for `/v1/messages`, Anthropic's
//! (`{"type": "error", "error": {"type", "message"}}`). No other code picks a status.

use crate::error::{FieldProblem, GatewayError};
use crate::limits::admission::LimitExceeded;
use crate::limits::spec::Metric;
use crate::providers::{ProviderError, TimeoutPhase};
use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
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
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyReadTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::NotReady | Self::UsageSpoolFull | Self::BodyBudgetExhausted => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::LimitExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Provider(err) => provider_status(err),
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
            Self::BodyReadTimeout { .. } => ("invalid_request_error", "request_timeout", None),
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
            Self::MethodNotAllowed { .. } => ("invalid_request_error", "method_not_allowed", None),
            Self::HeadersTooLarge { .. } => (
                "invalid_request_error",
                "request_header_fields_too_large",
                None,
            ),
            Self::NotReady => ("service_unavailable", "not_ready", None),
            Self::UsageSpoolFull => ("service_unavailable", "usage_spool_full", None),
            Self::BodyBudgetExhausted => ("service_unavailable", "server_busy", None),
            Self::LimitExceeded(exceeded) => limit_kind_and_code(exceeded),
            Self::Provider(ProviderError::Unsupported { param, .. }) => (
                "invalid_request_error",
                "unsupported_parameter",
                Some(param.clone()),
            ),
            Self::Provider(err) => {
                let kind = match provider_status(err).as_u16() {
                    400 => "invalid_request_error",
                    429 => "rate_limit_error",
                    _ => "upstream_error",
                };
                (kind, provider_code(err), None)
            }
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

/// OpenAI's spelling: rate limits are `requests` or `tokens` / `rate_limit_exceeded`, quotas and
/// budgets `insufficient_quota` for both.
fn limit_kind_and_code(exceeded: &LimitExceeded) -> (&'static str, &'static str, Option<String>) {
    match exceeded.metric {
        Metric::RequestsPerMinute | Metric::ConcurrentRequests => {
            ("requests", "rate_limit_exceeded", None)
        }
        Metric::TokensPerMinute => ("tokens", "rate_limit_exceeded", None),
        Metric::TokensPerHour
        | Metric::TokensPerDay
        | Metric::TokensPerMonth
        | Metric::BudgetMicrosPerMonth => ("insufficient_quota", "insufficient_quota", None),
    }
}

/// A timeout is a 504; an upstream's verdict that the request itself is bad (400, 413, 422) is
/// the client's 400, its 429 the client's 429 (with its Retry-After) and its overload a 503, so
/// clients neither retry hopeless requests nor hammer a throttled upstream; anything else is the
/// gateway's 502.
fn provider_status(err: &ProviderError) -> StatusCode {
    match err {
        ProviderError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        ProviderError::Unsupported { .. } => StatusCode::BAD_REQUEST,
        ProviderError::UpstreamStatus { status, .. } => match status {
            400 | 413 | 422 => StatusCode::BAD_REQUEST,
            429 => StatusCode::TOO_MANY_REQUESTS,
            // Overloaded (Anthropic's 529, anyone's 503): worth retrying later, as a 503 says.
            503 | 529 => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        },
        ProviderError::Unreachable { .. }
        | ProviderError::InvalidResponse { .. }
        | ProviderError::StreamInterrupted { .. } => StatusCode::BAD_GATEWAY,
    }
}

fn provider_code(err: &ProviderError) -> &'static str {
    match err {
        ProviderError::Timeout { phase, .. } => match phase {
            TimeoutPhase::Connect => "upstream_connect_timeout",
            TimeoutPhase::FirstToken => "upstream_first_token_timeout",
            TimeoutPhase::Idle => "upstream_idle_timeout",
            TimeoutPhase::Total => "upstream_total_timeout",
        },
        ProviderError::Unreachable { .. } => "upstream_unreachable",
        ProviderError::Unsupported { .. } => "unsupported_parameter",
        ProviderError::UpstreamStatus { status, .. } => match status {
            400 | 413 | 422 => "upstream_invalid_request",
            429 => "upstream_rate_limited",
            503 | 529 => "upstream_overloaded",
            _ => "upstream_error",
        },
        ProviderError::InvalidResponse { .. } | ProviderError::StreamInterrupted { .. } => {
            "upstream_error"
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        self.add_headers(response.headers_mut());
        response
    }
}

/// Anthropic's error shape, for clients of the inbound Messages API.
#[derive(Debug, Serialize)]
pub struct AnthropicErrorBody {
    /// Always `"error"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub error: AnthropicErrorDetail,
}

#[derive(Debug, Serialize)]
pub struct AnthropicErrorDetail {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message: String,
}

impl GatewayError {
    /// The same error in Anthropic's shape. The status is the one `status()` picks, so the
    /// type follows from it as in Anthropic's own table; 503 (not ready, spool full) is
    /// `overloaded_error`, Anthropic's "try again shortly", and the gateway's 502 is
    /// `api_error`.
    pub fn anthropic_body(&self) -> AnthropicErrorBody {
        let kind = match self.status().as_u16() {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            504 => "timeout_error",
            _ => "api_error",
        };
        AnthropicErrorBody {
            kind: "error",
            error: AnthropicErrorDetail {
                kind,
                message: self.to_string(),
            },
        }
    }

    /// The error as a response to an Anthropic client: Anthropic's body with the same status
    /// and headers (Retry-After, limit and timeout headers) an OpenAI client gets.
    pub fn into_anthropic_response(self) -> Response {
        let mut response = (self.status(), Json(self.anthropic_body())).into_response();
        self.add_headers(response.headers_mut());
        response
    }

    /// Headers that go with the error whatever the body's format (OpenAI's or Anthropic's).
    pub fn add_headers(&self, headers: &mut axum::http::HeaderMap) {
        match self {
            Self::LimitExceeded(exceeded) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(exceeded.retry_after_secs()),
                );
                headers.insert(
                    HeaderName::from_static("x-tollgate-limit-scope"),
                    HeaderValue::from_static(exceeded.level.as_str()),
                );
                headers.insert(
                    HeaderName::from_static("x-tollgate-limit-metric"),
                    HeaderValue::from_static(exceeded.metric.as_str()),
                );
            }
            Self::Provider(ProviderError::UpstreamStatus {
                status: 429,
                retry_after_secs: Some(secs),
                ..
            }) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            Self::Provider(ProviderError::Timeout { phase, .. }) => {
                headers.insert(
                    HeaderName::from_static("x-tollgate-timeout-phase"),
                    HeaderValue::from_static(phase.as_str()),
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::limits::spec::Level;

    fn exceeded(level: Level, metric: Metric, retry_after_ms: i64) -> GatewayError {
        GatewayError::LimitExceeded(LimitExceeded {
            level,
            scope_name: "acme/platform".into(),
            metric,
            limit: 60,
            retry_after_ms,
        })
    }

    #[tokio::test]
    async fn a_tripped_rate_limit_is_a_429_naming_the_limit_with_retry_after() {
        let response = exceeded(Level::Team, Metric::RequestsPerMinute, 1_200).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let headers = response.headers();
        assert_eq!(headers["retry-after"], "2");
        assert_eq!(headers["x-tollgate-limit-scope"], "team");
        assert_eq!(headers["x-tollgate-limit-metric"], "requests_per_minute");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": {
                "message": "Rate limit reached for requests per minute on team 'acme/platform': limit 60. Retry after 2s.",
                "type": "requests",
                "param": null,
                "code": "rate_limit_exceeded",
            }})
        );
    }

    #[test]
    fn quotas_and_budgets_are_insufficient_quota_and_tokens_are_tokens() {
        let tpm = exceeded(Level::Key, Metric::TokensPerMinute, 0)
            .body()
            .error;
        assert_eq!(
            (tpm.kind, tpm.code),
            ("tokens", Some("rate_limit_exceeded"))
        );
        let slots = exceeded(Level::Org, Metric::ConcurrentRequests, 0)
            .body()
            .error;
        assert_eq!(
            (slots.kind, slots.code),
            ("requests", Some("rate_limit_exceeded"))
        );
        for metric in [
            Metric::TokensPerHour,
            Metric::TokensPerDay,
            Metric::TokensPerMonth,
            Metric::BudgetMicrosPerMonth,
        ] {
            let err = exceeded(Level::Project, metric, 7_200_000);
            assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
            let body = err.body().error;
            assert_eq!(
                (body.kind, body.code),
                ("insufficient_quota", Some("insufficient_quota"))
            );
            assert!(
                body.message.contains("Retry after 2h0m0s"),
                "{}",
                body.message
            );
        }
    }

    #[tokio::test]
    async fn anthropic_errors_keep_the_status_and_headers_and_use_anthropics_types() {
        let response =
            exceeded(Level::Key, Metric::TokensPerMinute, 3_000).into_anthropic_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "3");
        assert_eq!(
            response.headers()["x-tollgate-limit-metric"],
            "tokens_per_minute"
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["error"]["type"], "rate_limit_error");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Rate limit reached")
        );
        assert_eq!(json.as_object().unwrap().len(), 2);

        let timeout = GatewayError::Provider(ProviderError::Timeout {
            provider: "p".into(),
            phase: TimeoutPhase::FirstToken,
            after_ms: 5,
        });
        assert_eq!(timeout.anthropic_body().error.kind, "timeout_error");
        let response = timeout.into_anthropic_response();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            response.headers()["x-tollgate-timeout-phase"],
            "first_token"
        );
    }

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
                    phase: TimeoutPhase::Idle,
                    after_ms: 5,
                }),
                504,
                "upstream_idle_timeout",
            ),
            (
                GatewayError::Provider(ProviderError::UpstreamStatus {
                    provider: "p".into(),
                    status: 500,
                    message: "boom".into(),
                    retry_after_secs: None,
                }),
                502,
                "upstream_error",
            ),
            (
                GatewayError::Provider(ProviderError::UpstreamStatus {
                    provider: "p".into(),
                    status: 429,
                    message: "slow down".into(),
                    retry_after_secs: Some(3),
                }),
                429,
                "upstream_rate_limited",
            ),
            (
                GatewayError::Provider(ProviderError::UpstreamStatus {
                    provider: "p".into(),
                    status: 529,
                    message: "Overloaded".into(),
                    retry_after_secs: None,
                }),
                503,
                "upstream_overloaded",
            ),
            (
                GatewayError::Provider(ProviderError::UpstreamStatus {
                    provider: "p".into(),
                    status: 422,
                    message: "bad schema".into(),
                    retry_after_secs: None,
                }),
                400,
                "upstream_invalid_request",
            ),
            (
                GatewayError::Provider(ProviderError::Unsupported {
                    provider_kind: "anthropic",
                    param: "n".into(),
                    reason: "one choice only".into(),
                }),
                400,
                "unsupported_parameter",
            ),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.body().error.code, Some(code));
        }
    }
}
