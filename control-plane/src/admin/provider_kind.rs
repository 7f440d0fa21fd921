//! The provider kinds the gateway speaks and what each needs to be reached: a base URL (with
//! the public endpoint as default where there is one), an API version where the provider's
//! wire format is versioned, and whether a secret is mandatory. Edges NACK a snapshot with a
//! kind they do not know, so the admin API refuses anything outside this list up front.

use super::validate;
use crate::error::AdminError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// The built-in mock: no network, no URL, no key.
    Mock,
    /// OpenAI and every OpenAI-compatible server (vLLM, Ollama, LM Studio).
    OpenAi,
    /// Deployment-based URLs under a resource endpoint, `api-version`, `api-key` header.
    AzureOpenAi,
    /// The Messages API, `anthropic-version` header.
    Anthropic,
    /// generateContent / streamGenerateContent.
    Gemini,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 5] = [
        Self::Mock,
        Self::OpenAi,
        Self::AzureOpenAi,
        Self::Anthropic,
        Self::Gemini,
    ];

    /// The name stored in `providers.kind` and sent to edges.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mock => "mock",
            Self::OpenAi => "openai",
            Self::AzureOpenAi => "azure_openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
        }
    }

    pub fn parse(value: &str) -> Result<Self, AdminError> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|kind| kind.as_str()).collect();
                AdminError::invalid(
                    "kind",
                    format!(
                        "unknown provider kind '{value}' (known: {})",
                        known.join(", ")
                    ),
                )
            })
    }

    /// The public endpoint used when no base URL is given. Azure has none: every resource has
    /// its own (`https://<resource>.openai.azure.com`).
    fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::OpenAi => Some("https://api.openai.com/v1"),
            Self::Anthropic => Some("https://api.anthropic.com"),
            Self::Gemini => Some("https://generativelanguage.googleapis.com"),
            Self::Mock | Self::AzureOpenAi => None,
        }
    }

    /// The base URL to store: the one given (checked against the URL policy), the kind's
    /// public endpoint when none is given, and empty for the mock, which has no network.
    pub fn base_url(self, given: &str) -> Result<String, AdminError> {
        match (self, given.trim()) {
            (Self::Mock, "") => Ok(String::new()),
            (Self::Mock, _) => Err(AdminError::invalid(
                "base_url",
                "the built-in mock provider takes no base URL",
            )),
            (Self::AzureOpenAi, "") => Err(AdminError::invalid(
                "base_url",
                "required for azure_openai: the resource endpoint, e.g. \
                 https://<resource>.openai.azure.com",
            )),
            (kind, "") => kind
                .default_base_url()
                .map(str::to_owned)
                .ok_or_else(|| AdminError::invalid("base_url", "required for this kind")),
            (_, url) => validate::base_url(url),
        }
    }

    /// Azure's `api-version` and Anthropic's `anthropic-version` pin the upstream wire format;
    /// no other kind has such a setting, so a value given for one is a mistake worth naming.
    /// Empty means the edge adapter's default.
    pub fn api_version(self, given: &str) -> Result<String, AdminError> {
        let given = given.trim();
        match self {
            Self::AzureOpenAi | Self::Anthropic if given.is_empty() => Ok(String::new()),
            Self::AzureOpenAi | Self::Anthropic => validate::api_version(given),
            Self::Mock | Self::OpenAi | Self::Gemini if given.is_empty() => Ok(String::new()),
            Self::Mock | Self::OpenAi | Self::Gemini => Err(AdminError::invalid(
                "api_version",
                format!(
                    "only azure_openai and anthropic providers take an API version, not {}",
                    self.as_str()
                ),
            )),
        }
    }

    /// Hosted providers refuse every call without a key, so creating one without it would only
    /// move the failure to the first request. OpenAI-compatible local servers (Ollama, vLLM)
    /// need none, and the mock ignores it.
    pub fn check_api_key(self, given: &str) -> Result<(), AdminError> {
        let required = matches!(self, Self::AzureOpenAi | Self::Anthropic | Self::Gemini);
        if required && given.trim().is_empty() {
            return Err(AdminError::invalid(
                "api_key",
                format!("required for {} providers", self.as_str()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn message(err: AdminError) -> String {
        err.to_string()
    }

    #[test]
    fn every_kind_parses_by_its_stored_name_and_unknown_ones_list_the_known() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(kind.as_str()).unwrap(), kind);
        }
        let err = message(ProviderKind::parse("quantum").unwrap_err());
        assert_eq!(
            err,
            "kind: unknown provider kind 'quantum' (known: mock, openai, azure_openai, anthropic, gemini)"
        );
        assert!(ProviderKind::parse("OpenAI").is_err());
        assert!(ProviderKind::parse("").is_err());
    }

    #[test]
    fn hosted_kinds_default_to_their_public_endpoint() {
        let cases = [
            (ProviderKind::OpenAi, "https://api.openai.com/v1"),
            (ProviderKind::Anthropic, "https://api.anthropic.com"),
            (
                ProviderKind::Gemini,
                "https://generativelanguage.googleapis.com",
            ),
        ];
        for (kind, url) in cases {
            assert_eq!(kind.base_url("").unwrap(), url, "{kind:?}");
            assert_eq!(kind.base_url("  ").unwrap(), url, "{kind:?}");
        }
        assert_eq!(ProviderKind::Mock.base_url("").unwrap(), "");
    }

    #[test]
    fn azure_needs_its_resource_endpoint_and_every_url_passes_the_policy() {
        let err = message(ProviderKind::AzureOpenAi.base_url("").unwrap_err());
        assert!(
            err.starts_with("base_url: required for azure_openai"),
            "{err}"
        );
        assert_eq!(
            ProviderKind::AzureOpenAi
                .base_url("https://acme.openai.azure.com/")
                .unwrap(),
            "https://acme.openai.azure.com"
        );
        for kind in [
            ProviderKind::OpenAi,
            ProviderKind::AzureOpenAi,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
        ] {
            assert!(
                kind.base_url("http://169.254.169.254/").is_err(),
                "{kind:?}"
            );
            assert!(kind.base_url("ftp://example.com").is_err(), "{kind:?}");
            assert!(kind.base_url("http://127.0.0.1:8080").is_ok(), "{kind:?}");
        }
        let err = message(ProviderKind::Mock.base_url("http://x").unwrap_err());
        assert!(err.starts_with("base_url:"), "{err}");
    }

    #[test]
    fn only_azure_and_anthropic_take_an_api_version() {
        assert_eq!(
            ProviderKind::AzureOpenAi
                .api_version("2024-10-01-preview")
                .unwrap(),
            "2024-10-01-preview"
        );
        assert_eq!(
            ProviderKind::Anthropic.api_version("2023-06-01").unwrap(),
            "2023-06-01"
        );
        assert_eq!(ProviderKind::Anthropic.api_version("").unwrap(), "");
        for kind in [
            ProviderKind::Mock,
            ProviderKind::OpenAi,
            ProviderKind::Gemini,
        ] {
            assert_eq!(kind.api_version("").unwrap(), "");
            let err = message(kind.api_version("2024-10-21").unwrap_err());
            assert!(
                err.starts_with("api_version: only azure_openai and anthropic"),
                "{err}"
            );
            assert!(err.ends_with(kind.as_str()), "{err}");
        }
        assert!(
            ProviderKind::Anthropic
                .api_version("2023-06-01\r\nx: y")
                .is_err()
        );
    }

    #[test]
    fn hosted_kinds_need_an_api_key_and_local_ones_do_not() {
        for kind in [
            ProviderKind::AzureOpenAi,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
        ] {
            let err = message(kind.check_api_key(" ").unwrap_err());
            assert_eq!(
                err,
                format!("api_key: required for {} providers", kind.as_str())
            );
            assert!(kind.check_api_key("sk-test").is_ok());
        }
        assert!(ProviderKind::OpenAi.check_api_key("").is_ok());
        assert!(ProviderKind::Mock.check_api_key("").is_ok());
    }
}
