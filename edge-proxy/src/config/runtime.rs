//! The compiled, immutable form of one config snapshot: hash maps the request path reads
//! without locks, and provider adapters built once (sharing one pooled HTTP client).

use super::keys::KeyRecord;
use super::snapshot::{Owners, ProviderSettings, Snapshot, SnapshotError, VirtualKey};
use crate::limits::spec::{Level, LimitSpec};
use crate::pricing::PriceSchedule;
use crate::providers::anthropic::AnthropicProvider;
use crate::providers::azure_openai::AzureOpenAiProvider;
use crate::providers::clients::HttpClients;
use crate::providers::gemini::GeminiProvider;
use crate::providers::mock::MockProvider;
use crate::providers::openai::OpenAiProvider;
use crate::providers::secret::ApiKey;
use crate::providers::{Deadlines, ModelTarget, Provider};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct Runtime {
    pub version: u64,
    pub generated_at_unix_ms: i64,
    owners: Owners,
    models_by_name: HashMap<String, Arc<ModelRoute>>,
    /// Model routes sorted by name, for listings.
    models_sorted: Vec<Arc<ModelRoute>>,
    /// Every configured limit; the limiter keeps one counter per entry.
    limits: Vec<Arc<LimitSpec>>,
    /// Per level (org, team, project, user, key) and scope id, the limits configured there.
    limits_by_scope: [HashMap<Arc<str>, Vec<Arc<LimitSpec>>>; Level::ALL.len()],
}

/// Where a public model name goes and what it costs.
#[derive(Debug)]
pub struct ModelRoute {
    pub name: String,
    pub upstream_model: String,
    pub provider_name: String,
    pub provider: Arc<dyn Provider>,
    pub prices: PriceSchedule,
    /// Output cap assumed when a request sets none (worst-case reservations).
    pub max_output_tokens: u32,
    /// Upstream deadlines, resolved from the model's, its provider's and the edge's defaults.
    pub deadlines: Deadlines,
    /// Pooled client whose connect timeout is `deadlines.connect`.
    pub http: reqwest::Client,
}

impl ModelRoute {
    /// What the provider adapter needs to call this model.
    pub fn target(&self) -> ModelTarget {
        ModelTarget {
            public_name: self.name.clone(),
            upstream_model: self.upstream_model.clone(),
            deadlines: self.deadlines,
            http: self.http.clone(),
        }
    }
}

impl Runtime {
    pub fn compile(snapshot: Snapshot, http: &HttpClients) -> Result<Self, SnapshotError> {
        let mut providers: HashMap<String, (String, u32, Arc<dyn Provider>)> = HashMap::new();
        for provider in snapshot.providers {
            let name = provider.name.clone();
            let adapter: Arc<dyn Provider> = match provider.kind {
                ProviderSettings::Mock(settings) => Arc::new(MockProvider::new(settings)),
                ProviderSettings::OpenAi(endpoint) => Arc::new(OpenAiProvider::new(
                    name,
                    &endpoint.base_url,
                    ApiKey::new(endpoint.api_key),
                )),
                ProviderSettings::AzureOpenAi {
                    endpoint,
                    api_version,
                } => Arc::new(AzureOpenAiProvider::new(
                    name,
                    &endpoint.base_url,
                    &api_version,
                    ApiKey::new(endpoint.api_key),
                )),
                ProviderSettings::Anthropic {
                    endpoint,
                    api_version,
                } => Arc::new(AnthropicProvider::new(
                    name,
                    &endpoint.base_url,
                    &api_version,
                    ApiKey::new(endpoint.api_key),
                )),
                ProviderSettings::Gemini(endpoint) => Arc::new(GeminiProvider::new(
                    name,
                    &endpoint.base_url,
                    ApiKey::new(endpoint.api_key),
                )),
            };
            providers.insert(
                provider.id,
                (provider.name, provider.request_timeout_ms, adapter),
            );
        }

        let mut models_by_name = HashMap::with_capacity(snapshot.models.len());
        for model in snapshot.models {
            let (provider_name, provider_total_ms, provider) = providers
                .get(&model.provider_id)
                .cloned()
                .ok_or_else(|| SnapshotError::DanglingReference {
                    what: "model",
                    id: model.name.clone(),
                    target: "provider",
                    target_id: model.provider_id.clone(),
                })?;
            let timeouts = model.timeouts;
            let deadlines = Deadlines::from_millis(
                timeouts.connect_ms,
                timeouts.first_token_ms,
                timeouts.idle_ms,
                timeouts.total_ms,
                provider_total_ms,
            );
            let http = http
                .with_connect_timeout(deadlines.connect)
                .map_err(|err| SnapshotError::Invalid {
                    what: "model",
                    id: model.name.clone(),
                    reason: format!("cannot build its HTTP client: {err}"),
                })?;
            let route = Arc::new(ModelRoute {
                name: model.name.clone(),
                upstream_model: model.upstream_model,
                provider_name,
                provider,
                prices: model.prices,
                max_output_tokens: model.max_output_tokens,
                deadlines,
                http,
            });
            models_by_name.insert(model.name, route);
        }
        let mut models_sorted: Vec<_> = models_by_name.values().cloned().collect();
        models_sorted.sort_by(|a, b| a.name.cmp(&b.name));

        let limits: Vec<Arc<LimitSpec>> = snapshot.limits.into_iter().map(Arc::new).collect();
        let mut limits_by_scope: [HashMap<Arc<str>, Vec<Arc<LimitSpec>>>; Level::ALL.len()] =
            Default::default();
        for spec in &limits {
            limits_by_scope[spec.key.level.index()]
                .entry(Arc::clone(&spec.key.scope_id))
                .or_default()
                .push(Arc::clone(spec));
        }

        Ok(Self {
            version: snapshot.version,
            generated_at_unix_ms: snapshot.generated_at_unix_ms,
            owners: snapshot.owners,
            models_by_name,
            models_sorted,
            limits,
            limits_by_scope,
        })
    }

    pub fn limits(&self) -> &[Arc<LimitSpec>] {
        &self.limits
    }

    /// The limits a request with this key must pass, in the order org, team, project, user
    /// (if any), key; empty when none apply.
    pub fn limits_for(&self, key: &VirtualKey) -> Vec<Arc<LimitSpec>> {
        let scopes = [
            Some((Level::Org, key.org.id.as_str())),
            Some((Level::Team, key.team.id.as_str())),
            Some((Level::Project, key.project.id.as_str())),
            key.user
                .as_ref()
                .map(|user| (Level::User, user.id.as_str())),
            Some((Level::Key, key.id.as_str())),
        ];
        scopes
            .into_iter()
            .flatten()
            .filter_map(|(level, id)| self.limits_by_scope[level.index()].get(id))
            .flatten()
            .cloned()
            .collect()
    }

    /// The key with its owners as this snapshot names them; an error when the key belongs to an
    /// org, team, project or user this snapshot does not have.
    pub fn resolve_key(&self, key: &KeyRecord) -> Result<VirtualKey, SnapshotError> {
        self.owners.resolve(key)
    }

    pub fn model(&self, name: &str) -> Option<&Arc<ModelRoute>> {
        self.models_by_name.get(name)
    }

    pub fn models(&self) -> &[Arc<ModelRoute>] {
        &self.models_sorted
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::snapshot::Owner;
    use crate::config::snapshot::tests::{first_key, wire_limit, wire_snapshot};
    use crate::limits::spec::Metric;
    use tollgate_proto::v1 as pb;

    #[test]
    fn each_key_gets_the_limits_of_every_level_above_it() {
        let mut wire = wire_snapshot();
        wire.limits = vec![
            wire_limit(
                pb::LimitScope::Key,
                "k1",
                pb::LimitMetric::RequestsPerMinute,
                60,
            ),
            wire_limit(
                pb::LimitScope::Org,
                "o1",
                pb::LimitMetric::TokensPerMonth,
                10_000,
            ),
            wire_limit(
                pb::LimitScope::Team,
                "t1",
                pb::LimitMetric::TokensPerMinute,
                500,
            ),
            wire_limit(
                pb::LimitScope::Project,
                "p1",
                pb::LimitMetric::BudgetMicrosPerMonth,
                9,
            ),
            wire_limit(
                pb::LimitScope::Team,
                "other",
                pb::LimitMetric::TokensPerMinute,
                5,
            ),
            wire_limit(
                pb::LimitScope::User,
                "u-none",
                pb::LimitMetric::TokensPerHour,
                5,
            ),
        ];
        wire.models[0].max_output_tokens = 256;
        let snapshot = Snapshot::try_from(wire).unwrap();
        let key = first_key(&snapshot);
        let runtime = Runtime::compile(snapshot, &crate::providers::test_http_clients()).unwrap();
        let applying: Vec<(Level, Metric)> = runtime
            .limits_for(&key)
            .iter()
            .map(|spec| (spec.key.level, spec.key.metric))
            .collect();
        assert_eq!(
            applying,
            vec![
                (Level::Org, Metric::TokensPerMonth),
                (Level::Team, Metric::TokensPerMinute),
                (Level::Project, Metric::BudgetMicrosPerMonth),
                (Level::Key, Metric::RequestsPerMinute),
            ]
        );
        assert_eq!(runtime.limits().len(), 6);
        let mut stranger = key;
        stranger.id = "unknown".into();
        stranger.team = Arc::new(Owner {
            id: "t-none".into(),
            name: "none".into(),
        });
        assert_eq!(
            runtime.limits_for(&stranger).len(),
            2,
            "org and project only"
        );
        assert_eq!(runtime.model("mock-small").unwrap().max_output_tokens, 256);
    }
}
