//! `tollgate-edge serve --config FILE`: the same providers, models and keys as the control plane
//! would send, from a TOML file, for a laptop or a single box without Postgres.

use super::keys::KeyRecord;
use super::snapshot::{
    DEFAULT_MAX_OUTPUT_TOKENS, HttpEndpoint, ModelConfig, ModelTimeouts, Owner, Owners,
    ProviderConfig, ProviderSettings, Snapshot,
};
use crate::pricing::{Price, PriceSchedule};
use crate::providers::mock::MockSettings;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tollgate_contract::address;
use tollgate_contract::provider::ProviderKind;

#[derive(Debug, thiserror::Error)]
pub enum FileConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid config: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    providers: Vec<FileProvider>,
    #[serde(default)]
    models: Vec<FileModel>,
    #[serde(default)]
    keys: Vec<FileKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileProvider {
    name: String,
    kind: String,
    #[serde(default)]
    base_url: String,
    api_key: Option<String>,
    /// Name of an environment variable holding the key, so the file need not contain it.
    api_key_env: Option<String>,
    /// Default total deadline for this provider's models (0 = the edge default).
    #[serde(default)]
    request_timeout_ms: u32,
    /// azure_openai: `api-version`; anthropic: `anthropic-version`.
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    mock: FileMock,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMock {
    #[serde(default)]
    latency_ms: u32,
    #[serde(default)]
    output_tokens: u32,
    #[serde(default)]
    chunk_interval_ms: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    name: String,
    provider: String,
    upstream_model: Option<String>,
    /// Integer micro-dollars per 1M tokens (2.50 USD = 2_500_000).
    #[serde(default)]
    input_price_micros_per_mtok: i64,
    #[serde(default)]
    output_price_micros_per_mtok: i64,
    /// Defaults to the input price.
    cached_input_price_micros_per_mtok: Option<i64>,
    /// A model without prices is served but its usage is recorded as unpriced.
    #[serde(default = "default_priced")]
    priced: bool,
    /// Output cap assumed when a request sets none (default 4096).
    max_output_tokens: Option<u32>,
    /// Upstream deadlines in ms by phase (0 or absent = the edge default).
    #[serde(default)]
    connect_timeout_ms: u32,
    #[serde(default)]
    first_token_timeout_ms: u32,
    #[serde(default)]
    idle_timeout_ms: u32,
    #[serde(default)]
    total_timeout_ms: u32,
}

fn default_priced() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    /// The plaintext key (the file is then a secret), or `key_sha256` instead.
    key: Option<String>,
    key_sha256: Option<String>,
    org: String,
    team: String,
    project: String,
    user: Option<String>,
    #[serde(default)]
    allowed_models: Vec<String>,
}

/// Files name owners only; the id is the kind and the name.
fn owner(owners: &mut HashMap<String, Arc<Owner>>, kind: &str, name: &str) -> String {
    let id = format!("{kind}:{name}");
    owners.entry(id.clone()).or_insert_with(|| {
        Arc::new(Owner {
            id: id.clone(),
            name: name.to_owned(),
        })
    });
    id
}

pub fn load(path: &Path) -> Result<Snapshot, FileConfigError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FileConfigError::Read {
        path: display.clone(),
        source,
    })?;
    parse(&text).map_err(|err| match err {
        FileConfigError::Parse { source, .. } => FileConfigError::Parse {
            path: display,
            source,
        },
        other => other,
    })
}

pub fn parse(text: &str) -> Result<Snapshot, FileConfigError> {
    let file: FileConfig = toml::from_str(text).map_err(|source| FileConfigError::Parse {
        path: "config".to_owned(),
        source: Box::new(source),
    })?;
    let invalid = FileConfigError::Invalid;

    let mut providers = Vec::with_capacity(file.providers.len());
    for provider in file.providers {
        let name = provider.name.clone();
        let endpoint = |default_base_url: Option<&str>| -> Result<HttpEndpoint, FileConfigError> {
            let api_key = match (&provider.api_key, &provider.api_key_env) {
                (Some(key), None) => key.clone(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    invalid(format!(
                        "provider '{name}': environment variable {var} is not set"
                    ))
                })?,
                (None, None) => String::new(),
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "provider '{name}': set api_key or api_key_env, not both"
                    )));
                }
            };
            let base_url = match (provider.base_url.trim(), default_base_url) {
                ("", Some(default)) => default.to_owned(),
                (given, _) => given.to_owned(),
            };
            address::check_base_url(&base_url)
                .map_err(|err| invalid(format!("provider '{name}': base_url {err}")))?;
            Ok(HttpEndpoint { base_url, api_key })
        };
        let Some(kind_name) = ProviderKind::parse(&provider.kind) else {
            return Err(invalid(format!(
                "provider '{name}': unknown kind '{}' ({})",
                provider.kind,
                ProviderKind::known()
            )));
        };
        let kind = match kind_name {
            ProviderKind::Mock => ProviderSettings::Mock(MockSettings {
                latency_ms: provider.mock.latency_ms,
                output_tokens: provider.mock.output_tokens,
                chunk_interval_ms: provider.mock.chunk_interval_ms,
            }),
            // The same defaults as the admin API (the contract's).
            ProviderKind::OpenAi => {
                ProviderSettings::OpenAi(endpoint(kind_name.default_base_url())?)
            }
            ProviderKind::AzureOpenAi => ProviderSettings::AzureOpenAi {
                endpoint: endpoint(None)?,
                api_version: provider.api_version.clone(),
            },
            ProviderKind::Anthropic => ProviderSettings::Anthropic {
                endpoint: endpoint(kind_name.default_base_url())?,
                api_version: provider.api_version.clone(),
            },
            ProviderKind::Gemini => {
                ProviderSettings::Gemini(endpoint(kind_name.default_base_url())?)
            }
        };
        let versioned = kind_name.takes_api_version();
        let needs_key = kind_name.requires_api_key();
        let has_key = match &kind {
            ProviderSettings::AzureOpenAi { endpoint, .. }
            | ProviderSettings::Anthropic { endpoint, .. } => !endpoint.api_key.is_empty(),
            ProviderSettings::Gemini(endpoint) => !endpoint.api_key.is_empty(),
            ProviderSettings::Mock(_) | ProviderSettings::OpenAi(_) => true,
        };
        if needs_key && !has_key {
            return Err(invalid(format!(
                "provider '{name}': {} needs api_key or api_key_env",
                provider.kind
            )));
        }
        if providers
            .iter()
            .any(|known: &ProviderConfig| known.name == name)
        {
            return Err(invalid(format!("provider '{name}' is defined twice")));
        }
        if !versioned && !provider.api_version.is_empty() {
            return Err(invalid(format!(
                "provider '{name}': api_version applies to azure_openai and anthropic only"
            )));
        }
        providers.push(ProviderConfig {
            id: provider.name.clone(),
            name: provider.name,
            kind,
            request_timeout_ms: provider.request_timeout_ms,
        });
    }

    let mut models = Vec::with_capacity(file.models.len());
    for model in file.models {
        if models
            .iter()
            .any(|known: &ModelConfig| known.name == model.name)
        {
            return Err(invalid(format!("model '{}' is defined twice", model.name)));
        }
        if !providers.iter().any(|p| p.id == model.provider) {
            return Err(invalid(format!(
                "model '{}': unknown provider '{}'",
                model.name, model.provider
            )));
        }
        let cached_input = model
            .cached_input_price_micros_per_mtok
            .unwrap_or(model.input_price_micros_per_mtok);
        if model.input_price_micros_per_mtok < 0
            || model.output_price_micros_per_mtok < 0
            || cached_input < 0
        {
            return Err(invalid(format!(
                "model '{}': prices must not be negative",
                model.name
            )));
        }
        models.push(ModelConfig {
            id: model.name.clone(),
            upstream_model: model.upstream_model.unwrap_or_else(|| model.name.clone()),
            name: model.name,
            provider_id: model.provider,
            max_output_tokens: model
                .max_output_tokens
                .filter(|&cap| cap > 0)
                .unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS),
            timeouts: ModelTimeouts {
                connect_ms: model.connect_timeout_ms,
                first_token_ms: model.first_token_timeout_ms,
                idle_ms: model.idle_timeout_ms,
                total_ms: model.total_timeout_ms,
            },
            prices: if model.priced {
                PriceSchedule::new(vec![Price {
                    version: 1,
                    effective_from_unix_ms: 0,
                    input_micros_per_mtok: model.input_price_micros_per_mtok,
                    cached_input_micros_per_mtok: cached_input,
                    output_micros_per_mtok: model.output_price_micros_per_mtok,
                }])
            } else {
                PriceSchedule::default()
            },
        });
    }

    let mut keys = Vec::with_capacity(file.keys.len());
    let mut owners = Owners::default();
    for (index, key) in file.keys.into_iter().enumerate() {
        let key_hash: [u8; 32] = match (key.key, key.key_sha256) {
            (Some(plaintext), None) if !plaintext.is_empty() => {
                Sha256::digest(plaintext.as_bytes()).into()
            }
            (None, Some(hex_hash)) => hex::decode(&hex_hash)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "keys[{index}]: key_sha256 must be 64 hex characters"
                    ))
                })?,
            _ => {
                return Err(invalid(format!(
                    "keys[{index}]: set exactly one of key or key_sha256"
                )));
            }
        };
        let org_id = owner(&mut owners.orgs, "org", &key.org);
        let team_id = owner(&mut owners.teams, "team", &key.team);
        let team_org = owners
            .team_orgs
            .entry(team_id.clone())
            .or_insert_with(|| org_id.clone());
        if *team_org != org_id {
            return Err(invalid(format!(
                "keys[{index}]: team '{}' is already used under another org",
                key.team
            )));
        }
        keys.push(KeyRecord {
            id: format!("file-key-{index}"),
            key_hash,
            prefix: hex::encode(&key_hash[..4]),
            org_id: org_id.into(),
            team_id: team_id.into(),
            project_id: owner(&mut owners.projects, "project", &key.project).into(),
            user_id: key
                .user
                .as_deref()
                .map(|user| owner(&mut owners.users, "user", user).into()),
            allowed_models: Arc::new(key.allowed_models.into_iter().collect()),
            expires_at_unix_ms: None,
        });
    }

    Ok(Snapshot {
        version: 1,
        generated_at_unix_ms: 0,
        owners,
        keys: Some(keys),
        providers,
        models,
        org_time_zones: Default::default(),
        // Limits are configured through the control plane only (see the README).
        limits: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let snapshot = parse(
            r#"
            [[providers]]
            name = "mock"
            kind = "mock"
            [providers.mock]
            output_tokens = 8

            [[models]]
            name = "mock-small"
            provider = "mock"
            input_price_micros_per_mtok = 100_000
            output_price_micros_per_mtok = 400_000

            [[keys]]
            key = "tg_local"
            org = "local"
            team = "local"
            project = "local"
            "#,
        )
        .unwrap();
        assert_eq!(snapshot.models[0].upstream_model, "mock-small");
        assert_eq!(
            snapshot.keys.as_ref().unwrap()[0].key_hash,
            <[u8; 32]>::from(Sha256::digest(b"tg_local"))
        );
    }

    #[test]
    fn parses_every_http_kind_with_its_settings() {
        let snapshot = parse(
            r#"
            [[providers]]
            name = "azure"
            kind = "azure_openai"
            base_url = "https://acme.openai.azure.com"
            api_key = "azure-key"
            api_version = "2024-10-01-preview"

            [[providers]]
            name = "claude"
            kind = "anthropic"
            base_url = "https://api.anthropic.com"
            api_key = "sk-ant"

            [[providers]]
            name = "google"
            kind = "gemini"
            base_url = "https://generativelanguage.googleapis.com"
            api_key = "gem-key"
            request_timeout_ms = 30_000

            [[providers]]
            name = "local"
            kind = "openai"
            base_url = "http://127.0.0.1:11434/v1"
            "#,
        )
        .unwrap();
        let kinds: Vec<&ProviderSettings> = snapshot.providers.iter().map(|p| &p.kind).collect();
        assert!(matches!(
            kinds[0],
            ProviderSettings::AzureOpenAi { endpoint, api_version }
                if endpoint.base_url == "https://acme.openai.azure.com"
                    && endpoint.api_key == "azure-key"
                    && api_version == "2024-10-01-preview"
        ));
        assert!(matches!(
            kinds[1],
            ProviderSettings::Anthropic { endpoint, api_version }
                if endpoint.api_key == "sk-ant" && api_version.is_empty()
        ));
        assert!(matches!(
            kinds[2],
            ProviderSettings::Gemini(endpoint) if endpoint.api_key == "gem-key"
        ));
        assert_eq!(snapshot.providers[2].request_timeout_ms, 30_000);
        assert!(matches!(
            kinds[3],
            ProviderSettings::OpenAi(endpoint) if endpoint.api_key.is_empty()
        ));
    }

    #[test]
    fn api_keys_come_from_the_file_or_the_environment_never_both() {
        // PATH is set wherever tests run; the test only proves the variable is read.
        let path = std::env::var("PATH").unwrap();
        let snapshot = parse(
            "[[providers]]\nname='claude'\nkind='anthropic'\n\
             base_url='https://api.anthropic.com'\napi_key_env='PATH'\n",
        )
        .unwrap();
        assert!(matches!(
            &snapshot.providers[0].kind,
            ProviderSettings::Anthropic { endpoint, .. } if endpoint.api_key == path
        ));
        let unset = parse(
            "[[providers]]\nname='claude'\nkind='anthropic'\n\
             base_url='https://api.anthropic.com'\n\
             api_key_env='TOLLGATE_TEST_VARIABLE_THAT_IS_NEVER_SET'\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            unset.contains("TOLLGATE_TEST_VARIABLE_THAT_IS_NEVER_SET is not set"),
            "{unset}"
        );
        let both = parse(
            "[[providers]]\nname='g'\nkind='gemini'\nbase_url='https://x.example'\n\
             api_key='k'\napi_key_env='PATH'\n",
        )
        .unwrap_err()
        .to_string();
        assert!(both.contains("not both"), "{both}");
    }

    #[test]
    fn http_kinds_need_an_http_base_url_and_only_versioned_kinds_take_a_version() {
        for kind in ["openai", "azure_openai", "anthropic", "gemini"] {
            let bad: &[&str] = if kind == "azure_openai" {
                &["", "not a url", "ftp://files.example.com"]
            } else {
                &["not a url", "ftp://files.example.com"]
            };
            for base_url in bad {
                let text = format!(
                    "[[providers]]\nname='p'\nkind='{kind}'\nbase_url='{base_url}'\napi_key='k'\n"
                );
                let err = parse(&text).unwrap_err().to_string();
                assert!(
                    err.starts_with("provider 'p': base_url"),
                    "{kind} {base_url:?}: {err}"
                );
            }
        }
        for kind in ["openai", "gemini"] {
            let text = format!(
                "[[providers]]\nname='p'\nkind='{kind}'\nbase_url='https://x.example'\n\
                 api_key='k'\napi_version='2024-10-21'\n"
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains("api_version applies to azure_openai and anthropic only"),
                "{kind}: {err}"
            );
        }
        let mock = parse("[[providers]]\nname='m'\nkind='mock'\napi_version='1'\n");
        assert!(mock.is_err());
    }

    #[test]
    fn a_metadata_address_is_refused_as_a_base_url() {
        let text = "[[providers]]\nname='p'\nkind='openai'\nbase_url='http://169.254.169.254/v1'\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(
            err.contains("cloud metadata addresses are not allowed"),
            "{err}"
        );
    }

    #[test]
    fn hosted_kinds_need_a_key_and_names_are_unique() {
        for kind in ["azure_openai", "anthropic", "gemini"] {
            let text =
                format!("[[providers]]\nname='p'\nkind='{kind}'\nbase_url='https://x.example'\n");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("needs api_key"), "{kind}: {err}");
        }
        let twice = "[[providers]]\nname='m'\nkind='mock'\n[[providers]]\nname='m'\nkind='mock'\n";
        assert!(
            parse(twice)
                .unwrap_err()
                .to_string()
                .contains("defined twice")
        );
        let models = "[[providers]]\nname='m'\nkind='mock'\n\
                      [[models]]\nname='x'\nprovider='m'\n[[models]]\nname='x'\nprovider='m'\n";
        assert!(
            parse(models)
                .unwrap_err()
                .to_string()
                .contains("defined twice")
        );
    }

    #[test]
    fn an_empty_base_url_means_the_kinds_public_endpoint() {
        for (kind, expected) in [
            ("openai", "https://api.openai.com/v1"),
            ("anthropic", "https://api.anthropic.com"),
            ("gemini", "https://generativelanguage.googleapis.com"),
        ] {
            let snapshot = parse(&format!(
                "[[providers]]\nname='p'\nkind='{kind}'\napi_key='k'\n"
            ))
            .unwrap();
            let base_url = match &snapshot.providers[0].kind {
                ProviderSettings::OpenAi(endpoint) | ProviderSettings::Gemini(endpoint) => {
                    endpoint.base_url.clone()
                }
                ProviderSettings::Anthropic { endpoint, .. } => endpoint.base_url.clone(),
                other => panic!("{other:?}"),
            };
            assert_eq!(base_url, expected);
        }
    }

    #[test]
    fn model_timeouts_are_read_per_phase_and_default_to_zero() {
        let snapshot = parse(
            r#"
            [[providers]]
            name = "mock"
            kind = "mock"

            [[models]]
            name = "tuned"
            provider = "mock"
            connect_timeout_ms = 2_000
            first_token_timeout_ms = 30_000
            idle_timeout_ms = 15_000
            total_timeout_ms = 120_000

            [[models]]
            name = "plain"
            provider = "mock"
            "#,
        )
        .unwrap();
        assert_eq!(
            snapshot.models[0].timeouts,
            ModelTimeouts {
                connect_ms: 2_000,
                first_token_ms: 30_000,
                idle_ms: 15_000,
                total_ms: 120_000,
            }
        );
        assert_eq!(snapshot.models[1].timeouts, ModelTimeouts::default());
        // A misspelt phase is an error, not a silently default deadline.
        let err = parse(
            "[[providers]]\nname='mock'\nkind='mock'\n\
             [[models]]\nname='m'\nprovider='mock'\nfirst_byte_timeout_ms=5\n",
        );
        assert!(err.is_err());
        let negative = parse(
            "[[providers]]\nname='mock'\nkind='mock'\n\
             [[models]]\nname='m'\nprovider='mock'\nidle_timeout_ms=-1\n",
        );
        assert!(negative.is_err());
    }

    #[test]
    fn rejects_unknown_fields_kinds_and_references() {
        assert!(parse("[[providers]]\nname='x'\nkind='mock'\ncolour='red'\n").is_err());
        assert!(parse("[[providers]]\nname='x'\nkind='quantum'\n").is_err());
        assert!(parse("[[models]]\nname='m'\nprovider='none'\n").is_err());
        assert!(parse("[[keys]]\norg='o'\nteam='t'\nproject='p'\n").is_err());
    }
}
