//! The admin API's checks of a provider's kind and the settings that depend on it (base URL,
//! API version, key), as INVALID_ARGUMENT naming the field. The kinds themselves are the
//! contract's; edges NACK a snapshot with a kind they do not know, so the admin API refuses
//! anything outside the list up front.

use super::validate;
use crate::error::AdminError;
pub use tollgate_contract::provider::ProviderKind;

/// The kind named in a request, or INVALID_ARGUMENT listing the known ones.
pub fn parse(value: &str) -> Result<ProviderKind, AdminError> {
    ProviderKind::parse(value).ok_or_else(|| {
        AdminError::invalid(
            "kind",
            format!(
                "unknown provider kind '{value}' (known: {})",
                ProviderKind::known()
            ),
        )
    })
}

/// The base URL to store: the one given (checked against the URL policy), the kind's public
/// endpoint when none is given, and empty for the mock, which has no network.
pub fn base_url(kind: ProviderKind, given: &str) -> Result<String, AdminError> {
    match (kind, given.trim()) {
        (ProviderKind::Mock, "") => Ok(String::new()),
        (ProviderKind::Mock, _) => Err(AdminError::invalid(
            "base_url",
            "the built-in mock provider takes no base URL",
        )),
        (ProviderKind::AzureOpenAi, "") => Err(AdminError::invalid(
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

/// The API version to store; a value given for a kind that has no such setting is a mistake
/// worth naming. Empty means the edge adapter's default.
pub fn api_version(kind: ProviderKind, given: &str) -> Result<String, AdminError> {
    let given = given.trim();
    if given.is_empty() {
        return Ok(String::new());
    }
    if !kind.takes_api_version() {
        return Err(AdminError::invalid(
            "api_version",
            format!("only azure_openai and anthropic providers take an API version, not {kind}"),
        ));
    }
    validate::api_version(given)
}

/// Creating a hosted provider without its key would only move the failure to the first request.
pub fn check_api_key(kind: ProviderKind, given: &str) -> Result<(), AdminError> {
    if kind.requires_api_key() && given.trim().is_empty() {
        return Err(AdminError::invalid(
            "api_key",
            format!("required for {kind} providers"),
        ));
    }
    Ok(())
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
            assert_eq!(parse(kind.as_str()).unwrap(), kind);
        }
        let err = message(parse("quantum").unwrap_err());
        assert_eq!(
            err,
            "kind: unknown provider kind 'quantum' (known: mock, openai, azure_openai, anthropic, gemini)"
        );
        assert!(parse("OpenAI").is_err());
        assert!(parse("").is_err());
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
            assert_eq!(base_url(kind, "").unwrap(), url, "{kind:?}");
            assert_eq!(base_url(kind, "  ").unwrap(), url, "{kind:?}");
        }
        assert_eq!(base_url(ProviderKind::Mock, "").unwrap(), "");
    }

    #[test]
    fn azure_needs_its_resource_endpoint_and_every_url_passes_the_policy() {
        let err = message(base_url(ProviderKind::AzureOpenAi, "").unwrap_err());
        assert!(
            err.starts_with("base_url: required for azure_openai"),
            "{err}"
        );
        assert_eq!(
            base_url(ProviderKind::AzureOpenAi, "https://acme.openai.azure.com/").unwrap(),
            "https://acme.openai.azure.com"
        );
        for kind in [
            ProviderKind::OpenAi,
            ProviderKind::AzureOpenAi,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
        ] {
            assert!(
                base_url(kind, "http://169.254.169.254/").is_err(),
                "{kind:?}"
            );
            assert!(base_url(kind, "ftp://example.com").is_err(), "{kind:?}");
            assert!(base_url(kind, "http://127.0.0.1:8080").is_ok(), "{kind:?}");
        }
        let err = message(base_url(ProviderKind::Mock, "http://x").unwrap_err());
        assert!(err.starts_with("base_url:"), "{err}");
    }

    #[test]
    fn only_azure_and_anthropic_take_an_api_version() {
        assert_eq!(
            api_version(ProviderKind::AzureOpenAi, "2024-10-01-preview").unwrap(),
            "2024-10-01-preview"
        );
        assert_eq!(
            api_version(ProviderKind::Anthropic, "2023-06-01").unwrap(),
            "2023-06-01"
        );
        assert_eq!(api_version(ProviderKind::Anthropic, "").unwrap(), "");
        for kind in [
            ProviderKind::Mock,
            ProviderKind::OpenAi,
            ProviderKind::Gemini,
        ] {
            assert_eq!(api_version(kind, "").unwrap(), "");
            let err = message(api_version(kind, "2024-10-21").unwrap_err());
            assert!(
                err.starts_with("api_version: only azure_openai and anthropic"),
                "{err}"
            );
            assert!(err.ends_with(kind.as_str()), "{err}");
        }
        assert!(api_version(ProviderKind::Anthropic, "2023-06-01\r\nx: y").is_err());
    }

    #[test]
    fn hosted_kinds_need_an_api_key_and_local_ones_do_not() {
        for kind in [
            ProviderKind::AzureOpenAi,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
        ] {
            let err = message(check_api_key(kind, " ").unwrap_err());
            assert_eq!(
                err,
                format!("api_key: required for {} providers", kind.as_str())
            );
            assert!(check_api_key(kind, "sk-test").is_ok());
        }
        assert!(check_api_key(ProviderKind::OpenAi, "").is_ok());
        assert!(check_api_key(ProviderKind::Mock, "").is_ok());
    }
}
