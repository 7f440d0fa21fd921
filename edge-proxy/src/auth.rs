//! Authenticate phase: the virtual key, from `Authorization: Bearer` (OpenAI's SDKs) or
//! `x-api-key` (Anthropic's), is hashed and looked up in the key table, and its owners in the
//! runtime; the plaintext is never stored or logged.

use crate::config::keys::KeyTable;
use crate::config::runtime::Runtime;
use crate::config::snapshot::VirtualKey;
use crate::error::GatewayError;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub fn authenticate(
    runtime: &Runtime,
    keys: &KeyTable,
    headers: &HeaderMap,
    now_unix_ms: i64,
) -> Result<Arc<VirtualKey>, GatewayError> {
    let presented = bearer_token(headers)
        .or_else(|| x_api_key(headers))
        .ok_or(GatewayError::MissingApiKey)?;
    if !keys.is_loaded() {
        return Err(GatewayError::NotReady);
    }
    let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let record = keys.get(&hash).ok_or(GatewayError::InvalidApiKey)?;
    if record
        .expires_at_unix_ms
        .is_some_and(|expires| expires <= now_unix_ms)
    {
        return Err(GatewayError::ExpiredApiKey);
    }
    // A key whose team this snapshot does not know yet (the snapshot naming it is on its way,
    // or was refused) cannot be attributed, so it is not served.
    let key = runtime.resolve_key(&record).map_err(|err| {
        tracing::warn!(key_prefix = %record.prefix, error = %err, "known key does not fit the config in force");
        GatewayError::InvalidApiKey
    })?;
    Ok(Arc::new(key))
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Anthropic's header. A bearer token wins when both are sent, so a client cannot be
/// authenticated by one header and logged by another.
fn x_api_key(headers: &HeaderMap) -> Option<&str> {
    let token = headers.get("x-api-key")?.to_str().ok()?.trim();
    (!token.is_empty()).then_some(token)
}

pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::RuntimeHolder;
    use crate::config::snapshot::Snapshot;
    use crate::config::snapshot::tests::wire_snapshot;

    fn runtime_with_key(plaintext: &str, expires_at_unix_ms: i64) -> RuntimeHolder {
        let mut wire = wire_snapshot();
        wire.virtual_keys[0].key_hash = Sha256::digest(plaintext.as_bytes()).to_vec();
        wire.virtual_keys[0].expires_at_unix_ms = expires_at_unix_ms;
        let holder = RuntimeHolder::new();
        holder
            .install(
                Snapshot::try_from(wire).unwrap(),
                &crate::providers::test_http_clients(),
            )
            .unwrap();
        holder
    }

    fn authenticate(
        holder: &RuntimeHolder,
        headers: &HeaderMap,
        now_unix_ms: i64,
    ) -> Result<Arc<VirtualKey>, GatewayError> {
        super::authenticate(&holder.load().unwrap(), holder.keys(), headers, now_unix_ms)
    }

    #[test]
    fn a_key_whose_team_the_config_does_not_know_is_refused() {
        let holder = runtime_with_key("tg_good", 0);
        let mut wire = wire_snapshot();
        wire.teams[0].id = "t2".into();
        wire.projects[0].team_id = "t2".into();
        wire.keys_by_delta = true;
        holder
            .install(
                Snapshot::try_from(wire).unwrap(),
                &crate::providers::test_http_clients(),
            )
            .unwrap();
        assert_eq!(
            holder.keys().len(),
            1,
            "a snapshot without keys keeps the table"
        );
        assert!(matches!(
            authenticate(&holder, &headers("Bearer tg_good"), 0),
            Err(GatewayError::InvalidApiKey)
        ));
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", value.parse().unwrap());
        headers
    }

    fn api_key_header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", value.parse().unwrap());
        headers
    }

    #[test]
    fn anthropic_clients_authenticate_with_x_api_key() {
        let runtime = runtime_with_key("tg_good", 0);
        assert_eq!(
            authenticate(&runtime, &api_key_header("tg_good"), 0)
                .unwrap()
                .id,
            "k1"
        );
        assert!(matches!(
            authenticate(&runtime, &api_key_header("tg_bad"), 0),
            Err(GatewayError::InvalidApiKey)
        ));
        assert!(matches!(
            authenticate(&runtime, &api_key_header("  "), 0),
            Err(GatewayError::MissingApiKey)
        ));
        // The bearer token wins over x-api-key; a non-bearer Authorization falls back to it.
        let mut both = api_key_header("tg_good");
        both.insert("authorization", "Bearer tg_bad".parse().unwrap());
        assert!(matches!(
            authenticate(&runtime, &both, 0),
            Err(GatewayError::InvalidApiKey)
        ));
        both.insert("authorization", "Basic dXNlcg==".parse().unwrap());
        assert!(authenticate(&runtime, &both, 0).is_ok());
    }

    #[test]
    fn known_keys_pass_and_everything_else_is_refused() {
        let runtime = runtime_with_key("tg_good", 0);
        assert_eq!(
            authenticate(&runtime, &headers("Bearer tg_good"), 0)
                .unwrap()
                .id,
            "k1"
        );
        assert!(matches!(
            authenticate(&runtime, &HeaderMap::new(), 0),
            Err(GatewayError::MissingApiKey)
        ));
        assert!(matches!(
            authenticate(&runtime, &headers("Bearer tg_bad"), 0),
            Err(GatewayError::InvalidApiKey)
        ));
        assert!(matches!(
            authenticate(&runtime, &headers("Basic tg_good"), 0),
            Err(GatewayError::MissingApiKey)
        ));
    }

    #[test]
    fn expired_keys_are_refused() {
        let runtime = runtime_with_key("tg_old", 1_000);
        assert!(authenticate(&runtime, &headers("Bearer tg_old"), 999).is_ok());
        assert!(matches!(
            authenticate(&runtime, &headers("Bearer tg_old"), 1_000),
            Err(GatewayError::ExpiredApiKey)
        ));
    }
}
