//! The control plane's error type and the one place that maps it to a gRPC status.

use crate::crypto::CryptoError;
use crate::limits::store::LeaseError;

/// Why an admin or config call failed. Variants carry data; the message is built in one place.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("{entity} '{name}' already exists")]
    AlreadyExists { entity: &'static str, name: String },
    #[error("{entity} '{name}' not found")]
    NotFound { entity: &'static str, name: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("database unavailable or failed")]
    Database(#[from] sqlx::Error),
    #[error("secret handling failed: {0}")]
    Crypto(#[from] CryptoError),
    #[error("lease: {0}")]
    Lease(#[from] LeaseError),
}

impl AdminError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    pub fn not_found(entity: &'static str, name: impl Into<String>) -> Self {
        Self::NotFound {
            entity,
            name: name.into(),
        }
    }
}

/// Turns a unique-constraint violation into `AlreadyExists` naming what collided; any other
/// database error stays a database error.
pub fn conflict_as(entity: &'static str, name: &str) -> impl FnOnce(sqlx::Error) -> AdminError {
    let name = name.to_owned();
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            AdminError::AlreadyExists { entity, name }
        }
        _ => AdminError::Database(err),
    }
}

impl From<AdminError> for tonic::Status {
    fn from(err: AdminError) -> Self {
        let message = err.to_string();
        match err {
            AdminError::InvalidArgument { .. } => tonic::Status::invalid_argument(message),
            AdminError::AlreadyExists { .. } => tonic::Status::already_exists(message),
            AdminError::NotFound { .. } => tonic::Status::not_found(message),
            AdminError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            AdminError::Database(source) => {
                tracing::error!(error = %source, "database error");
                tonic::Status::unavailable(message)
            }
            AdminError::Crypto(source) => {
                tracing::error!(error = %source, "secret handling error");
                tonic::Status::internal(message)
            }
            AdminError::Lease(LeaseError::Database(source)) => {
                tracing::error!(error = %source, "database error in a lease call");
                tonic::Status::unavailable(message)
            }
            AdminError::Lease(source) => {
                tracing::error!(error = %source, "lease call failed");
                tonic::Status::internal(message)
            }
        }
    }
}
