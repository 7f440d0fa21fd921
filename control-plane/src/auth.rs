//! Who may call the control plane: admins with the bootstrap token (admin API) and edges with
//! a join token (config stream, usage reports). Roles and scoped admin tokens come later.

use crate::error::AdminError;
use crate::secrets;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

/// Identity of an authenticated admin caller, recorded in the audit log.
#[derive(Debug, Clone)]
pub struct AdminIdentity {
    pub actor: String,
}

/// Checks `authorization: Bearer <token>` against the bootstrap admin token in constant time.
#[derive(Clone)]
pub struct AdminAuth {
    token_digest: [u8; 32],
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminAuth(..)")
    }
}

impl AdminAuth {
    pub fn new(bootstrap_token: &str) -> Self {
        Self {
            token_digest: Sha256::digest(bootstrap_token.as_bytes()).into(),
        }
    }

    /// Comparing digests keeps the comparison constant-time and independent of token length.
    pub fn check(&self, metadata: &MetadataMap) -> Result<AdminIdentity, Status> {
        let presented = bearer_token(metadata).ok_or_else(|| {
            Status::unauthenticated(
                "missing admin token: send metadata 'authorization: Bearer <token>'",
            )
        })?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if bool::from(digest.ct_eq(&self.token_digest)) {
            Ok(AdminIdentity {
                actor: "bootstrap-admin".to_owned(),
            })
        } else {
            Err(Status::unauthenticated("invalid admin token"))
        }
    }

    /// Interceptor for the admin service: rejects unauthenticated calls before any handler runs.
    pub fn intercept(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let identity = self.check(request.metadata())?;
        request.extensions_mut().insert(identity);
        Ok(request)
    }
}

/// Checks that the call carries `authorization: Bearer <join token>` naming a join token that
/// exists and is not revoked. Every edge-facing service uses this one check, so an edge that may
/// stream config may report usage and vice versa. Only the token's SHA-256 is stored, so the
/// lookup is by hash; a revoked token stops working at the edge's next call.
pub async fn verify_join_token(pool: &PgPool, metadata: &MetadataMap) -> Result<(), AdminError> {
    let token = bearer_token(metadata)
        .ok_or_else(|| AdminError::Unauthenticated("missing join token".to_owned()))?;
    let hash = secrets::sha256(token);
    let known = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM edge_join_tokens
                          WHERE token_hash = $1 AND revoked_at IS NULL) AS "known!""#,
        &hash[..]
    )
    .fetch_one(pool)
    .await?;
    if known {
        Ok(())
    } else {
        Err(AdminError::Unauthenticated(
            "unknown or revoked join token".to_owned(),
        ))
    }
}

/// The token after `Bearer ` in the `authorization` metadata, if any.
pub fn bearer_token(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn metadata_with(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", value.parse().unwrap());
        metadata
    }

    #[test]
    fn accepts_only_the_bootstrap_token() {
        let auth = AdminAuth::new("s3cret");
        assert!(auth.check(&metadata_with("Bearer s3cret")).is_ok());
        assert!(auth.check(&metadata_with("Bearer s3cret2")).is_err());
        assert!(auth.check(&metadata_with("s3cret")).is_err());
        assert!(auth.check(&MetadataMap::new()).is_err());
    }
}
