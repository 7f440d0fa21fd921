//! The domain form of a config snapshot, and its validation from the wire. Anything the edge
//! cannot serve correctly (unknown provider kind, dangling reference, malformed key hash) fails
//! here, so the whole snapshot is NACKed and the previous one keeps serving.

use crate::pricing::{Price, PriceSchedule};
use crate::providers::mock::MockSettings;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tollgate_proto::v1 as pb;

/// Provider deadline when the snapshot leaves it at 0.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: u64,
    pub generated_at_unix_ms: i64,
    pub keys: Vec<VirtualKey>,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
}

/// Something a key is attributed to: its id for accounting and name for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct VirtualKey {
    pub id: String,
    pub key_hash: [u8; 32],
    pub prefix: String,
    pub org: Owner,
    pub team: Owner,
    pub project: Owner,
    pub user: Option<Owner>,
    /// Empty means every model.
    pub allowed_models: HashSet<String>,
    pub expires_at_unix_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub id: String,
    pub name: String,
    pub kind: ProviderKind,
}

#[derive(Debug, Clone)]
pub enum ProviderKind {
    Mock(MockSettings),
    OpenAi {
        base_url: String,
        api_key: String,
        timeout: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub id: String,
    pub name: String,
    pub provider_id: String,
    pub upstream_model: String,
    pub prices: PriceSchedule,
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
    #[error("provider '{provider}': unknown kind '{kind}' (this edge supports mock, openai)")]
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
) -> HashMap<String, Owner> {
    items
        .iter()
        .map(|item| {
            (
                id(item).to_owned(),
                Owner {
                    id: id(item).to_owned(),
                    name: name(item).to_owned(),
                },
            )
        })
        .collect()
}

fn lookup(
    owners: &HashMap<String, Owner>,
    what: &'static str,
    id: &str,
    target: &'static str,
    target_id: &str,
) -> Result<Owner, SnapshotError> {
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
        let orgs = owners(&wire.orgs, |o| &o.id, |o| &o.name);
        let teams = owners(&wire.teams, |t| &t.id, |t| &t.name);
        let projects = owners(&wire.projects, |p| &p.id, |p| &p.name);
        let users = owners(&wire.users, |u| &u.id, |u| &u.name);
        let team_org: HashMap<&str, &str> = wire
            .teams
            .iter()
            .map(|t| (t.id.as_str(), t.org_id.as_str()))
            .collect();
        for team in &wire.teams {
            lookup(&orgs, "team", &team.id, "org", &team.org_id)?;
        }
        for project in &wire.projects {
            lookup(&teams, "project", &project.id, "team", &project.team_id)?;
        }

        let mut keys = Vec::with_capacity(wire.virtual_keys.len());
        let mut seen_hashes = HashSet::new();
        for key in wire.virtual_keys {
            let key_hash: [u8; 32] = key
                .key_hash
                .as_slice()
                .try_into()
                .map_err(|_| invalid("virtual key", &key.id, "key hash must be 32 bytes"))?;
            if !seen_hashes.insert(key_hash) {
                return Err(SnapshotError::Duplicate {
                    what: "virtual key hash",
                    name: key.key_prefix,
                });
            }
            if team_org.get(key.team_id.as_str()) != Some(&key.org_id.as_str()) {
                return Err(invalid(
                    "virtual key",
                    &key.id,
                    "team does not belong to the key's org",
                ));
            }
            let user = if key.user_id.is_empty() {
                None
            } else {
                Some(lookup(
                    &users,
                    "virtual key",
                    &key.id,
                    "user",
                    &key.user_id,
                )?)
            };
            keys.push(VirtualKey {
                org: lookup(&orgs, "virtual key", &key.id, "org", &key.org_id)?,
                team: lookup(&teams, "virtual key", &key.id, "team", &key.team_id)?,
                project: lookup(
                    &projects,
                    "virtual key",
                    &key.id,
                    "project",
                    &key.project_id,
                )?,
                user,
                key_hash,
                prefix: key.key_prefix,
                allowed_models: key.allowed_models.into_iter().collect(),
                expires_at_unix_ms: (key.expires_at_unix_ms != 0).then_some(key.expires_at_unix_ms),
                id: key.id,
            });
        }

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
            });
        }

        Ok(Self {
            version: wire.version,
            generated_at_unix_ms: wire.generated_at_unix_ms,
            keys,
            providers,
            models,
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
        let timeout = match wire.request_timeout_ms {
            0 => DEFAULT_REQUEST_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        let kind = match wire.kind.as_str() {
            "mock" => {
                let mock = wire.mock.unwrap_or_default();
                ProviderKind::Mock(MockSettings {
                    latency_ms: mock.latency_ms,
                    output_tokens: mock.output_tokens,
                    chunk_interval_ms: mock.chunk_interval_ms,
                })
            }
            "openai" => {
                let url = url::Url::parse(&wire.base_url)
                    .map_err(|err| invalid("provider", &wire.name, format!("base URL: {err}")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(invalid(
                        "provider",
                        &wire.name,
                        "base URL must be http or https",
                    ));
                }
                ProviderKind::OpenAi {
                    base_url: wire.base_url,
                    api_key: wire.api_key,
                    timeout,
                }
            }
            other => {
                return Err(SnapshotError::UnknownProviderKind {
                    provider: wire.name,
                    kind: other.to_owned(),
                });
            }
        };
        Ok(Self {
            id: wire.id,
            name: wire.name,
            kind,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub fn wire_snapshot() -> pb::ConfigSnapshot {
        pb::ConfigSnapshot {
            version: 7,
            generated_at_unix_ms: 1,
            orgs: vec![pb::SnapshotOrg {
                id: "o1".into(),
                name: "acme".into(),
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
            }],
        }
    }

    #[test]
    fn a_consistent_snapshot_validates() {
        let snapshot = Snapshot::try_from(wire_snapshot()).unwrap();
        assert_eq!(snapshot.version, 7);
        assert_eq!(snapshot.keys[0].team.name, "ml");
        assert_eq!(snapshot.models[0].prices.at(0).map(|p| p.version), Some(1));
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
