//! `GET /v1/models`: the models this key may call, in OpenAI's list format.

use super::AppState;
use crate::api::models::{ModelCard, ModelList};
use crate::auth;
use crate::error::GatewayError;
use crate::routing::may_use;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use std::sync::Arc;

pub async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<ModelList>, GatewayError> {
    let runtime = state.runtime.load().ok_or(GatewayError::NotReady)?;
    let key = auth::authenticate(
        &runtime,
        state.runtime.keys(),
        &headers,
        auth::now_unix_ms(),
    )?;
    let created = runtime.generated_at_unix_ms / 1000;
    let data = runtime
        .models()
        .iter()
        .filter(|model| may_use(&key, &model.name))
        .map(|model| ModelCard {
            id: model.name.clone(),
            object: "model",
            created,
            owned_by: model.provider_name.clone(),
        })
        .collect();
    Ok(Json(ModelList {
        object: "list",
        data,
    }))
}
