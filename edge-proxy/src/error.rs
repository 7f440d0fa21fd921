//! Why a request failed at the gateway. Variants carry data; `http/errors.rs` is the one place
//! that turns them into a status code and OpenAI error JSON.

use crate::limits::admission::LimitExceeded;
use crate::providers::ProviderError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldProblem {
    Missing,
    WrongType,
    InvalidValue,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("We could not parse the JSON body of your request: {0}")]
    MalformedJson(String),
    #[error("{message}")]
    InvalidField {
        param: String,
        problem: FieldProblem,
        message: String,
    },
    #[error(
        "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' (or 'x-api-key: <key>')."
    )]
    MissingApiKey,
    #[error("Incorrect API key provided.")]
    InvalidApiKey,
    #[error("The API key has expired.")]
    ExpiredApiKey,
    #[error("This API key is not allowed to use the model '{0}'.")]
    ModelNotAllowed(String),
    #[error("The model '{0}' does not exist or you do not have access to it.")]
    ModelNotFound(String),
    #[error("The request body is larger than the limit of {limit_bytes} bytes.")]
    BodyTooLarge { limit_bytes: usize },
    #[error("Could not read the request body: {0}")]
    BodyRead(String),
    #[error("The request body did not arrive within {seconds} s.")]
    BodyReadTimeout { seconds: u64 },
    #[error(
        "The gateway cannot record usage right now (its usage spool is full or its disk cannot be written); try again later."
    )]
    UsageSpoolFull,
    #[error("The gateway is reading too many large request bodies at once; try again shortly.")]
    BodyBudgetExhausted,
    #[error("Unknown endpoint: {0}")]
    UnknownRoute(String),
    #[error("Method {method} is not allowed on {path}.")]
    MethodNotAllowed { method: String, path: String },
    #[error(
        "The request headers are too large: at most {max_headers} headers and {max_bytes} bytes of them."
    )]
    HeadersTooLarge {
        max_headers: usize,
        max_bytes: usize,
    },
    #[error("The gateway has not loaded a configuration yet; try again shortly.")]
    NotReady,
    #[error("{0}")]
    LimitExceeded(LimitExceeded),
    #[error(transparent)]
    Provider(#[from] ProviderError),
}
