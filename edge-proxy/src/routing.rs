//! Route phase: from the model a client named to the provider that serves it, checking that the
//! key may use it. Aliases, rules and splits will grow here; budget-aware downgrade will read
//! `KeyLimits::budget_used_pct` (the edge's view of the key's most used monthly budget).

use crate::config::runtime::{ModelRoute, Runtime};
use crate::config::snapshot::VirtualKey;
use crate::error::GatewayError;
use std::sync::Arc;
use tollgate_contract::usage::{MAX_REQUESTED_MODEL_BYTES, client_text};

pub fn resolve(
    runtime: &Runtime,
    key: &VirtualKey,
    model: &str,
) -> Result<Arc<ModelRoute>, GatewayError> {
    let route = runtime
        .model(model)
        // The name is the client's: echoed bounded, never 3 MiB of it.
        .ok_or_else(|| {
            GatewayError::ModelNotFound(client_text(model, MAX_REQUESTED_MODEL_BYTES))
        })?;
    if !may_use(key, model) {
        return Err(GatewayError::ModelNotAllowed(model.to_owned()));
    }
    Ok(Arc::clone(route))
}

/// An empty allow-list means every model.
pub fn may_use(key: &VirtualKey, model: &str) -> bool {
    key.allowed_models.is_empty() || key.allowed_models.contains(model)
}
