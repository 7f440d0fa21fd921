//! The domain form of a config snapshot, and its validation from the wire. Anything the edge
//! cannot serve correctly (unknown provider kind, dangling reference, malformed key hash) fails
//! here, so the whole snapshot is NACKed and the previous one keeps serving.

use super::keys::KeyRecord;
use crate::limits::spec::{
    DEFAULT_HARD_THRESHOLD_PCT, DEFAULT_SOFT_THRESHOLD_PCT, Level, LimitKey, LimitSpec,
    MAX_THRESHOLD_PCT, Metric,
};
use crate::pricing::{Price, PriceSchedule};
use crate::providers::mock::MockSettings;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tollgate_contract::address;
use tollgate_contract::provider::ProviderKind;
use tollgate_proto::v1 as pb;

pub use tollgate_contract::DEFAULT_MAX_OUTPUT_TOKENS;

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: u64,
    pub generated_at_unix_ms: i64,
    pub owners: Owners,
    /// The keys, when the snapshot carries them (a config file, a plane that sends no key
    /// deltas); `None` when keys travel as deltas and the edge keeps the table it holds.
    pub keys: Option<Vec<KeyRecord>>,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    /// IANA time zone per org id; the plane computes calendar periods, the edge only shows it.
    pub org_time_zones: HashMap<String, String>,
    pub limits: Vec<LimitSpec>,
}

/// Something a key is attributed to: its id for accounting and name for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub name: String,
}

/// A key with its owners resolved against the snapshot in force, as one request sees it.
#[derive(Debug, Clone)]
pub struct VirtualKey {
    pub id: String,
    pub key_hash: [u8; 32],
    pub prefix: String,
    pub org: Arc<Owner>,
    pub team: Arc<Owner>,
    pub project: Arc<Owner>,
    pub user: Option<Arc<Owner>>,
    /// Empty means every model.
    pub allowed_models: Arc<HashSet<String>>,
    pub expires_at_unix_ms: Option<i64>,
}

/// Everything a key can belong to, by id.
#[derive(Debug, Clone, Default)]
pub struct Owners {
    pub orgs: HashMap<String, Arc<Owner>>,
    pub teams: HashMap<String, Arc<Owner>>,
    /// The org of each team, by team id: a key's team must be in the key's org.
    pub team_orgs: HashMap<String, String>,
    pub projects: HashMap<String, Arc<Owner>>,
    pub users: HashMap<String, Arc<Owner>>,
}

impl Owners {
    /// The key with its owners, or why it cannot be used with this snapshot.
    pub fn resolve(&self, key: &KeyRecord) -> Result<VirtualKey, SnapshotError> {
        let what = "virtual key";
        let org = lookup(&self.orgs, what, &key.id, "org", &key.org_id)?;
        let team = lookup(&self.teams, what, &key.id, "team", &key.team_id)?;
        if self.team_orgs.get(&*key.team_id).map(String::as_str) != Some(&*key.org_id) {
            return Err(invalid(
                what,
                &key.id,
                "team does not belong to the key's org",
            ));
        }
        let project = lookup(&self.projects, what, &key.id, "project", &key.project_id)?;
        let user = key
            .user_id
            .as_deref()
            .map(|user_id| lookup(&self.users, what, &key.id, "user", user_id))
            .transpose()?;
        Ok(VirtualKey {
            id: key.id.clone(),
            key_hash: key.key_hash,
            prefix: key.prefix.clone(),
            org,
            team,
            project,
            user,
            allowed_models: Arc::clone(&key.allowed_models),
            expires_at_unix_ms: key.expires_at_unix_ms,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub id: String,
    pub name: String,
    pub kind: ProviderSettings,
    /// Default total deadline for this provider's models; 0 means the edge default.
    pub request_timeout_ms: u32,
}

/// What the edge needs to build one provider's adapter; each kind carries only its own settings.
#[derive(Debug, Clone)]
pub enum ProviderSettings {
    Mock(MockSettings),
    OpenAi(HttpEndpoint),
    AzureOpenAi {
        endpoint: HttpEndpoint,
        /// Empty means the adapter's default.
        api_version: String,
    },
    Anthropic {
        endpoint: HttpEndpoint,
        /// The `anthropic-version` header; empty means the adapter's default.
        api_version: String,
    },
    Gemini(HttpEndpoint),
}

/// An upstream base URL (checked to be http or https) and its secret.
#[derive(Debug, Clone)]
pub struct HttpEndpoint {
    pub base_url: String,
    /// Decrypted; never logged.
    pub api_key: String,
}

/// A model's upstream deadlines in milliseconds as configured; 0 means the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelTimeouts {
    pub connect_ms: u32,
    pub first_token_ms: u32,
    pub idle_ms: u32,
    pub total_ms: u32,
}

impl From<pb::ModelTimeouts> for ModelTimeouts {
    fn from(wire: pb::ModelTimeouts) -> Self {
        Self {
            connect_ms: wire.connect_ms,
            first_token_ms: wire.first_token_ms,
            idle_ms: wire.idle_ms,
            total_ms: wire.total_ms,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub id: String,
    pub name: String,
    pub provider_id: String,
    pub upstream_model: String,
    pub prices: PriceSchedule,
    /// Output cap when a request sets none.
    pub max_output_tokens: u32,
    pub timeouts: ModelTimeouts,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SnapshotError {
    #[error("{what} '{id}' refers to unknown {target} '{target_id}'")]
    DanglingReference {
        what: &'static str,
        id: String,
        target: &'static str,
        target_id: String,
    },
    #[error(
        "provider '{provider}': unknown kind '{kind}' (this edge supports {})",
        ProviderKind::known()
    )]
    UnknownProviderKind { provider: String, kind: String },
    #[error("{what} '{id}': {reason}")]
    Invalid {
        what: &'static str,
        id: String,
        reason: String,
    },
    #[error("duplicate {what} '{name}'")]
    Duplicate { what: &'static str, name: String },
}

fn invalid(what: &'static str, id: &str, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid {
        what,
        id: id.to_owned(),
        reason: reason.into(),
    }
}

fn owners<T>(
    items: &[T],
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
) -> HashMap<String, Arc<Owner>> {
    items
        .iter()
        .map(|item| {
            (
                id(item).to_owned(),
                Arc::new(Owner {
                    id: id(item).to_owned(),
                    name: name(item).to_owned(),
                }),
            )
        })
        .collect()
}

fn lookup(
    owners: &HashMap<String, Arc<Owner>>,
    what: &'static str,
    id: &str,
    target: &'static str,
    target_id: &str,
) -> Result<Arc<Owner>, SnapshotError> {
    owners
        .get(target_id)
        .cloned()
        .ok_or_else(|| SnapshotError::DanglingReference {
            what,
            id: id.to_owned(),
            target,
            target_id: target_id.to_owned(),
        })
}

impl TryFrom<pb::ConfigSnapshot> for Snapshot {
    type Error = SnapshotError;

    fn try_from(wire: pb::ConfigSnapshot) -> Result<Self, Self::Error> {
        let owners = Owners {
            orgs: owners(&wire.orgs, |o| &o.id, |o| &o.name),
            teams: owners(&wire.teams, |t| &t.id, |t| &t.name),
            team_orgs: wire
                .teams
                .iter()
                .map(|t| (t.id.clone(), t.org_id.clone()))
                .collect(),
            projects: owners(&wire.projects, |p| &p.id, |p| &p.name),
            users: owners(&wire.users, |u| &u.id, |u| &u.name),
        };
        for team in &wire.teams {
            lookup(&owners.orgs, "team", &team.id, "org", &team.org_id)?;
        }
        for project in &wire.projects {
            lookup(
                &owners.teams,
                "project",
                &project.id,
                "team",
                &project.team_id,
            )?;
        }

        // Keys in the snapshot must all be usable with it; keys that come as deltas are
        // resolved when a request uses them.
        let keys = if wire.keys_by_delta {
            None
        } else {
            let mut keys = Vec::with_capacity(wire.virtual_keys.len());
            let mut seen_hashes = HashSet::new();
            for key in wire.virtual_keys {
                let id = key.id.clone();
                let key = KeyRecord::try_from(key)
                    .map_err(|err| invalid("virtual key", &id, err.to_string()))?;
                if !seen_hashes.insert(key.key_hash) {
                    return Err(SnapshotError::Duplicate {
                        what: "virtual key hash",
                        name: key.prefix,
                    });
                }
                owners.resolve(&key)?;
                keys.push(key);
            }
            Some(keys)
        };

        let mut providers = Vec::with_capacity(wire.providers.len());
        for provider in wire.providers {
            providers.push(ProviderConfig::try_from(provider)?);
        }
        let provider_ids: HashSet<&str> = providers.iter().map(|p| p.id.as_str()).collect();

        let mut models = Vec::with_capacity(wire.models.len());
        let mut model_names = HashSet::new();
        for model in wire.models {
            if !provider_ids.contains(model.provider_id.as_str()) {
                return Err(SnapshotError::DanglingReference {
                    what: "model",
                    id: model.name,
                    target: "provider",
                    target_id: model.provider_id,
                });
            }
            if model.name.is_empty() || model.upstream_model.is_empty() {
                return Err(invalid(
                    "model",
                    &model.id,
                    "name and upstream model must be set",
                ));
            }
            let prices = price_schedule(&model)?;
            if !model_names.insert(model.name.clone()) {
                return Err(SnapshotError::Duplicate {
                    what: "model",
                    name: model.name,
                });
            }
            models.push(ModelConfig {
                id: model.id,
                name: model.name,
                provider_id: model.provider_id,
                upstream_model: model.upstream_model,
                prices,
                max_output_tokens: match model.max_output_tokens {
                    0 => DEFAULT_MAX_OUTPUT_TOKENS,
                    cap => cap,
                },
                timeouts: model.timeouts.map(ModelTimeouts::from).unwrap_or_default(),
            });
        }

        let mut limits = Vec::with_capacity(wire.limits.len());
        let mut limit_keys = HashSet::new();
        for limit in wire.limits {
            let mut spec = LimitSpec::try_from(limit)?;
            if !limit_keys.insert(spec.key.clone()) {
                return Err(SnapshotError::Duplicate {
                    what: "limit",
                    name: spec.key.to_string(),
                });
            }
            if spec.scope_name.is_empty() {
                let named = match spec.key.level {
                    Level::Org => Some(&owners.orgs),
                    Level::Team => Some(&owners.teams),
                    Level::Project => Some(&owners.projects),
                    Level::User => Some(&owners.users),
                    Level::Key => None,
                };
                spec.scope_name = named
                    .and_then(|named| named.get(&*spec.key.scope_id))
                    .map_or_else(|| spec.key.level.as_str().to_owned(), |o| o.name.clone());
            }
            limits.push(spec);
        }
        let org_time_zones = wire
            .orgs
            .into_iter()
            .map(|org| {
                let zone = if org.time_zone.is_empty() {
                    "UTC".to_owned()
                } else {
                    org.time_zone
                };
                (org.id, zone)
            })
            .collect();

        Ok(Self {
            version: wire.version,
            generated_at_unix_ms: wire.generated_at_unix_ms,
            owners,
            keys,
            providers,
            models,
            org_time_zones,
            limits,
        })
    }
}

impl TryFrom<pb::SnapshotLimit> for LimitSpec {
    type Error = SnapshotError;

    /// A limit the edge cannot enforce exactly as meant fails the whole snapshot (NACK).
    fn try_from(wire: pb::SnapshotLimit) -> Result<Self, Self::Error> {
        let wire_key = wire
            .key
            .ok_or_else(|| invalid("limit", &wire.scope_name, "key is missing"))?;
        let id = format!(
            "{} {} {}",
            wire_key.scope, wire_key.scope_id, wire_key.metric
        );
        let level = Level::from_wire(wire_key.scope)
            .ok_or_else(|| invalid("limit", &id, "scope is missing or unknown"))?;
        let metric = Metric::from_wire(wire_key.metric)
            .ok_or_else(|| invalid("limit", &id, "metric is missing or unknown"))?;
        if wire_key.scope_id.is_empty() {
            return Err(invalid("limit", &id, "scope id is empty"));
        }
        let key = LimitKey {
            level,
            scope_id: wire_key.scope_id.into(),
            metric,
        };
        let id = key.to_string();
        if wire.limit <= 0 {
            return Err(invalid("limit", &id, "limit must be > 0"));
        }
        let soft = match wire.soft_threshold_pct {
            0 => DEFAULT_SOFT_THRESHOLD_PCT,
            pct => pct,
        };
        let hard = match wire.hard_threshold_pct {
            0 => DEFAULT_HARD_THRESHOLD_PCT,
            pct => pct,
        };
        if soft > MAX_THRESHOLD_PCT || hard > MAX_THRESHOLD_PCT {
            return Err(invalid(
                "limit",
                &id,
                format!("thresholds must be in 1..={MAX_THRESHOLD_PCT} percent"),
            ));
        }
        if soft > hard {
            return Err(invalid(
                "limit",
                &id,
                "soft threshold must not exceed the hard threshold",
            ));
        }
        let enforced_limit = metric.enforced_limit(wire.limit, hard);
        if enforced_limit <= 0 {
            return Err(invalid("limit", &id, "enforced limit must be > 0"));
        }
        Ok(Self {
            key,
            configured_limit: wire.limit,
            enforced_limit,
            soft_threshold_pct: soft,
            hard_threshold_pct: hard,
            scope_name: wire.scope_name,
        })
    }
}

/// The model's price versions. A plane that predates scheduled prices sends only the current
/// price; it then applies from the beginning of time. Version 0 with no list means unpriced.
fn price_schedule(model: &pb::SnapshotModel) -> Result<PriceSchedule, SnapshotError> {
    let mut versions: Vec<Price> = model
        .prices
        .iter()
        .map(|price| Price {
            version: price.version,
            effective_from_unix_ms: price.effective_from_unix_ms,
            input_micros_per_mtok: price.input_price_micros_per_mtok,
            cached_input_micros_per_mtok: price.cached_input_price_micros_per_mtok,
            output_micros_per_mtok: price.output_price_micros_per_mtok,
        })
        .collect();
    if versions.is_empty() && model.price_version > 0 {
        versions.push(Price {
            version: model.price_version,
            effective_from_unix_ms: 0,
            input_micros_per_mtok: model.input_price_micros_per_mtok,
            cached_input_micros_per_mtok: model.input_price_micros_per_mtok,
            output_micros_per_mtok: model.output_price_micros_per_mtok,
        });
    }
    let mut seen = HashSet::new();
    for price in &versions {
        if price.input_micros_per_mtok < 0
            || price.cached_input_micros_per_mtok < 0
            || price.output_micros_per_mtok < 0
        {
            return Err(invalid("model", &model.name, "prices must not be negative"));
        }
        if price.version == 0 || !seen.insert(price.version) {
            return Err(invalid(
                "model",
                &model.name,
                "price versions must be unique and > 0",
            ));
        }
    }
    Ok(PriceSchedule::new(versions))
}

impl TryFrom<pb::SnapshotProvider> for ProviderConfig {
    type Error = SnapshotError;

    fn try_from(wire: pb::SnapshotProvider) -> Result<Self, Self::Error> {
        let endpoint = || -> Result<HttpEndpoint, SnapshotError> {
            address::check_base_url(&wire.base_url)
                .map_err(|err| invalid("provider", &wire.name, format!("base URL {err}")))?;
            Ok(HttpEndpoint {
                base_url: wire.base_url.clone(),
                api_key: wire.api_key.clone(),
            })
        };
        let Some(kind) = ProviderKind::parse(&wire.kind) else {
            return Err(SnapshotError::UnknownProviderKind {
                provider: wire.name,
                kind: wire.kind,
            });
        };
        let kind = match kind {
            ProviderKind::Mock => {
                let mock = wire.mock.unwrap_or_default();
                ProviderSettings::Mock(MockSettings {
                    latency_ms: mock.latency_ms,
                    output_tokens: mock.output_tokens,
                    chunk_interval_ms: mock.chunk_interval_ms,
                })
            }
            ProviderKind::OpenAi => ProviderSettings::OpenAi(endpoint()?),
            ProviderKind::AzureOpenAi => ProviderSettings::AzureOpenAi {
                endpoint: endpoint()?,
                api_version: wire.api_version.clone(),
            },
            ProviderKind::Anthropic => ProviderSettings::Anthropic {
                endpoint: endpoint()?,
                api_version: wire.api_version.clone(),
            },
            ProviderKind::Gemini => ProviderSettings::Gemini(endpoint()?),
        };
        Ok(Self {
            id: wire.id,
            name: wire.name,
            kind,
            request_timeout_ms: wire.request_timeout_ms,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The first key a snapshot carries, with its owners.
    pub fn first_key(snapshot: &Snapshot) -> VirtualKey {
        let keys = snapshot.keys.as_ref().unwrap();
        snapshot.owners.resolve(&keys[0]).unwrap()
    }

    pub fn wire_snapshot() -> pb::ConfigSnapshot {
        pb::ConfigSnapshot {
            version: 7,
            generated_at_unix_ms: 1,
            orgs: vec![pb::SnapshotOrg {
                id: "o1".into(),
                name: "acme".into(),
                time_zone: "Europe/Berlin".into(),
            }],
            teams: vec![pb::SnapshotTeam {
                id: "t1".into(),
                org_id: "o1".into(),
                name: "ml".into(),
            }],
            projects: vec![pb::SnapshotProject {
                id: "p1".into(),
                team_id: "t1".into(),
                name: "bot".into(),
            }],
            users: vec![],
            virtual_keys: vec![pb::SnapshotVirtualKey {
                id: "k1".into(),
                key_hash: vec![7; 32],
                key_prefix: "tg_0707".into(),
                org_id: "o1".into(),
                team_id: "t1".into(),
                project_id: "p1".into(),
                user_id: String::new(),
                allowed_models: vec![],
                expires_at_unix_ms: 0,
            }],
            providers: vec![pb::SnapshotProvider {
                id: "pr1".into(),
                name: "mock".into(),
                kind: "mock".into(),
                base_url: String::new(),
                api_key: String::new(),
                request_timeout_ms: 0,
                mock: None,
                api_version: String::new(),
            }],
            models: vec![pb::SnapshotModel {
                id: "m1".into(),
                name: "mock-small".into(),
                provider_id: "pr1".into(),
                upstream_model: "mock-small".into(),
                input_price_micros_per_mtok: 100_000,
                output_price_micros_per_mtok: 400_000,
                price_version: 1,
                prices: vec![],
                max_output_tokens: 0,
                timeouts: None,
            }],
            keys_by_delta: false,
            limits: vec![],
        }
    }

    pub fn wire_limit(
        scope: pb::LimitScope,
        scope_id: &str,
        metric: pb::LimitMetric,
        limit: i64,
    ) -> pb::SnapshotLimit {
        pb::SnapshotLimit {
            key: Some(pb::LimitKey {
                scope: scope as i32,
                scope_id: scope_id.into(),
                metric: metric as i32,
            }),
            limit,
            soft_threshold_pct: 80,
            hard_threshold_pct: 100,
            scope_name: String::new(),
        }
    }

    #[test]
    fn limits_validate_with_defaults_and_enforced_values() {
        let mut wire = wire_snapshot();
        let mut budget = wire_limit(
            pb::LimitScope::Team,
            "t1",
            pb::LimitMetric::BudgetMicrosPerMonth,
            1_000_000,
        );
        budget.hard_threshold_pct = 90;
        budget.scope_name = "acme/ml".into();
        let mut rpm = wire_limit(
            pb::LimitScope::Key,
            "k1",
            pb::LimitMetric::RequestsPerMinute,
            60,
        );
        rpm.soft_threshold_pct = 0;
        rpm.hard_threshold_pct = 0;
        wire.limits = vec![budget, rpm];
        let snapshot = Snapshot::try_from(wire).unwrap();
        assert_eq!(
            snapshot.models[0].max_output_tokens,
            DEFAULT_MAX_OUTPUT_TOKENS
        );
        assert_eq!(snapshot.org_time_zones["o1"], "Europe/Berlin");
        let budget = &snapshot.limits[0];
        assert_eq!(budget.key.level, Level::Team);
        assert_eq!(
            (budget.configured_limit, budget.enforced_limit),
            (1_000_000, 900_000)
        );
        assert_eq!(budget.scope_name, "acme/ml");
        let rpm = &snapshot.limits[1];
        assert_eq!((rpm.soft_threshold_pct, rpm.hard_threshold_pct), (80, 100));
        assert_eq!(rpm.enforced_limit, 60);
        // No name sent: the key level's name, never its id.
        assert_eq!(rpm.scope_name, "key");
    }

    #[test]
    fn bad_limits_fail_the_whole_snapshot() {
        type Mutation = Box<dyn Fn(&mut pb::SnapshotLimit)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("limit must be > 0", Box::new(|l| l.limit = 0)),
            (
                "scope is missing",
                Box::new(|l| l.key.as_mut().unwrap().scope = 0),
            ),
            (
                "metric is missing",
                Box::new(|l| l.key.as_mut().unwrap().metric = 42),
            ),
            (
                "scope id is empty",
                Box::new(|l| l.key.as_mut().unwrap().scope_id.clear()),
            ),
            ("key is missing", Box::new(|l| l.key = None)),
            (
                "thresholds must be",
                Box::new(|l| l.hard_threshold_pct = 1001),
            ),
            ("soft threshold", Box::new(|l| l.soft_threshold_pct = 101)),
        ];
        for (expected, mutate) in cases {
            let mut wire = wire_snapshot();
            let mut limit = wire_limit(
                pb::LimitScope::Org,
                "o1",
                pb::LimitMetric::TokensPerDay,
                1_000,
            );
            mutate(&mut limit);
            wire.limits = vec![limit];
            let err = Snapshot::try_from(wire).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
        let mut wire = wire_snapshot();
        let limit = wire_limit(pb::LimitScope::Org, "o1", pb::LimitMetric::TokensPerDay, 1);
        wire.limits = vec![limit.clone(), limit];
        assert!(matches!(
            Snapshot::try_from(wire),
            Err(SnapshotError::Duplicate { .. })
        ));
    }

    #[test]
    fn a_consistent_snapshot_validates() {
        let snapshot = Snapshot::try_from(wire_snapshot()).unwrap();
        assert_eq!(snapshot.version, 7);
        let key = &snapshot.keys.as_ref().unwrap()[0];
        assert_eq!(snapshot.owners.resolve(key).unwrap().team.name, "ml");
        assert_eq!(snapshot.models[0].prices.at(0).map(|p| p.version), Some(1));
    }

    fn wire_provider(kind: &str, base_url: &str, api_version: &str) -> pb::SnapshotProvider {
        pb::SnapshotProvider {
            id: format!("{kind}-id"),
            name: format!("{kind}-provider"),
            kind: kind.into(),
            base_url: base_url.into(),
            api_key: "sk-secret".into(),
            request_timeout_ms: 90_000,
            mock: None,
            api_version: api_version.into(),
        }
    }

    #[test]
    fn each_http_kind_carries_its_endpoint_key_and_api_version() {
        let azure = ProviderConfig::try_from(wire_provider(
            "azure_openai",
            "https://acme.openai.azure.com",
            "2024-10-01-preview",
        ))
        .unwrap();
        assert_eq!(azure.request_timeout_ms, 90_000);
        assert!(matches!(
            &azure.kind,
            ProviderSettings::AzureOpenAi { endpoint, api_version }
                if endpoint.base_url == "https://acme.openai.azure.com"
                    && endpoint.api_key == "sk-secret"
                    && api_version == "2024-10-01-preview"
        ));

        let anthropic = ProviderConfig::try_from(wire_provider(
            "anthropic",
            "https://api.anthropic.com",
            "2023-06-01",
        ))
        .unwrap();
        assert!(matches!(
            &anthropic.kind,
            ProviderSettings::Anthropic { endpoint, api_version }
                if endpoint.base_url == "https://api.anthropic.com" && api_version == "2023-06-01"
        ));
        // Empty means the adapter's default, decided at the edge.
        let anthropic =
            ProviderConfig::try_from(wire_provider("anthropic", "https://api.anthropic.com", ""))
                .unwrap();
        assert!(matches!(
            &anthropic.kind,
            ProviderSettings::Anthropic { api_version, .. } if api_version.is_empty()
        ));

        let gemini = ProviderConfig::try_from(wire_provider(
            "gemini",
            "https://generativelanguage.googleapis.com",
            "",
        ))
        .unwrap();
        assert!(matches!(
            &gemini.kind,
            ProviderSettings::Gemini(endpoint)
                if endpoint.base_url == "https://generativelanguage.googleapis.com"
                    && endpoint.api_key == "sk-secret"
        ));

        let openai =
            ProviderConfig::try_from(wire_provider("openai", "http://127.0.0.1:11434/v1", ""))
                .unwrap();
        assert!(matches!(
            &openai.kind,
            ProviderSettings::OpenAi(endpoint) if endpoint.base_url == "http://127.0.0.1:11434/v1"
        ));
    }

    #[test]
    fn http_kinds_with_a_bad_base_url_fail_the_whole_snapshot() {
        for kind in ["openai", "azure_openai", "anthropic", "gemini"] {
            for (base_url, expected) in [
                ("", "base URL"),
                ("not a url", "base URL"),
                ("ftp://files.example.com", "must be http or https"),
            ] {
                let mut wire = wire_snapshot();
                wire.providers[0] = wire_provider(kind, base_url, "");
                wire.models[0].provider_id = wire.providers[0].id.clone();
                let err = Snapshot::try_from(wire).unwrap_err();
                assert!(
                    matches!(&err, SnapshotError::Invalid { what: "provider", id, .. }
                        if *id == format!("{kind}-provider")),
                    "{kind} {base_url:?}: {err}"
                );
                assert!(
                    err.to_string().contains(expected),
                    "{kind} {base_url:?}: {err}"
                );
            }
        }
    }

    #[test]
    fn kinds_are_matched_exactly_and_unknown_ones_name_the_supported() {
        for kind in ["Anthropic", "azure", "vertex", ""] {
            let mut wire = wire_snapshot();
            wire.providers[0] = wire_provider(kind, "https://example.com", "");
            wire.models[0].provider_id = wire.providers[0].id.clone();
            let err = Snapshot::try_from(wire).unwrap_err();
            assert!(
                matches!(&err, SnapshotError::UnknownProviderKind { kind: got, .. } if got == kind),
                "{kind:?}: {err}"
            );
            assert!(
                err.to_string()
                    .contains("mock, openai, azure_openai, anthropic, gemini"),
                "{err}"
            );
        }
    }

    #[test]
    fn model_timeouts_travel_as_configured_and_default_to_zero() {
        let mut wire = wire_snapshot();
        wire.models[0].timeouts = Some(pb::ModelTimeouts {
            connect_ms: 2_000,
            first_token_ms: 0,
            idle_ms: 15_000,
            total_ms: 120_000,
        });
        let snapshot = Snapshot::try_from(wire).unwrap();
        assert_eq!(
            snapshot.models[0].timeouts,
            ModelTimeouts {
                connect_ms: 2_000,
                first_token_ms: 0,
                idle_ms: 15_000,
                total_ms: 120_000,
            }
        );
        // A plane that predates per-model timeouts sends none: every phase at its default.
        let snapshot = Snapshot::try_from(wire_snapshot()).unwrap();
        assert_eq!(snapshot.models[0].timeouts, ModelTimeouts::default());
    }

    #[test]
    fn unknown_provider_kinds_and_dangling_references_are_rejected() {
        let mut wire = wire_snapshot();
        wire.providers[0].kind = "quantum".into();
        let err = Snapshot::try_from(wire).unwrap_err().to_string();
        assert!(err.contains("unknown kind 'quantum'"), "{err}");

        let mut wire = wire_snapshot();
        wire.models[0].provider_id = "nope".into();
        assert!(matches!(
            Snapshot::try_from(wire),
            Err(SnapshotError::DanglingReference { .. })
        ));

        let mut wire = wire_snapshot();
        wire.virtual_keys[0].key_hash = vec![1, 2, 3];
        assert!(Snapshot::try_from(wire).is_err());

        let mut wire = wire_snapshot();
        wire.models[0].input_price_micros_per_mtok = -1;
        assert!(Snapshot::try_from(wire).is_err());

        let mut wire = wire_snapshot();
        let duplicate = wire.models[0].clone();
        wire.models.push(duplicate);
        assert!(matches!(
            Snapshot::try_from(wire),
            Err(SnapshotError::Duplicate { .. })
        ));
    }
}
