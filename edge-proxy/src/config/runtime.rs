//! The compiled, immutable form of one config snapshot: hash maps the request path reads
//! without locks, and provider adapters built once (sharing one pooled HTTP client).

use super::snapshot::{ProviderKind, Snapshot, SnapshotError, VirtualKey};
use crate::pricing::PriceSchedule;
use crate::providers::Provider;
use crate::providers::mock::MockProvider;
use crate::providers::openai::{ApiKey, OpenAiProvider};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct Runtime {
    pub version: u64,
    pub generated_at_unix_ms: i64,
    keys_by_hash: HashMap<[u8; 32], Arc<VirtualKey>>,
    models_by_name: HashMap<String, Arc<ModelRoute>>,
    /// Model routes sorted by name, for listings.
    models_sorted: Vec<Arc<ModelRoute>>,
}

/// Where a public model name goes and what it costs.
#[derive(Debug)]
pub struct ModelRoute {
    pub name: String,
    pub upstream_model: String,
    pub provider_name: String,
    pub provider: Arc<dyn Provider>,
    pub prices: PriceSchedule,
}

impl Runtime {
    pub fn compile(snapshot: Snapshot, http: &reqwest::Client) -> Result<Self, SnapshotError> {
        let mut providers: HashMap<String, (String, Arc<dyn Provider>)> = HashMap::new();
        for provider in snapshot.providers {
            let adapter: Arc<dyn Provider> = match provider.kind {
                ProviderKind::Mock(settings) => Arc::new(MockProvider::new(settings)),
                ProviderKind::OpenAi {
                    base_url,
                    api_key,
                    timeout,
                } => Arc::new(OpenAiProvider::new(
                    provider.name.clone(),
                    &base_url,
                    ApiKey::new(api_key),
                    timeout,
                    http.clone(),
                )),
            };
            providers.insert(provider.id, (provider.name, adapter));
        }

        let mut models_by_name = HashMap::with_capacity(snapshot.models.len());
        for model in snapshot.models {
            let (provider_name, provider) =
                providers.get(&model.provider_id).cloned().ok_or_else(|| {
                    SnapshotError::DanglingReference {
                        what: "model",
                        id: model.name.clone(),
                        target: "provider",
                        target_id: model.provider_id.clone(),
                    }
                })?;
            let route = Arc::new(ModelRoute {
                name: model.name.clone(),
                upstream_model: model.upstream_model,
                provider_name,
                provider,
                prices: model.prices,
            });
            models_by_name.insert(model.name, route);
        }
        let mut models_sorted: Vec<_> = models_by_name.values().cloned().collect();
        models_sorted.sort_by(|a, b| a.name.cmp(&b.name));

        let keys_by_hash = snapshot
            .keys
            .into_iter()
            .map(|key| (key.key_hash, Arc::new(key)))
            .collect();

        Ok(Self {
            version: snapshot.version,
            generated_at_unix_ms: snapshot.generated_at_unix_ms,
            keys_by_hash,
            models_by_name,
            models_sorted,
        })
    }

    pub fn key(&self, key_hash: &[u8; 32]) -> Option<&Arc<VirtualKey>> {
        self.keys_by_hash.get(key_hash)
    }

    pub fn model(&self, name: &str) -> Option<&Arc<ModelRoute>> {
        self.models_by_name.get(name)
    }

    pub fn models(&self) -> &[Arc<ModelRoute>] {
        &self.models_sorted
    }
}
