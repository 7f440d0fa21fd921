//! The provider kinds the gateway speaks, by the name stored in `providers.kind` and sent to
//! edges, and what each needs: a base URL (with the public endpoint as default where there is
//! one), an API version where the provider versions its wire format, and whether a key is
//! mandatory. The admin API refuses a kind outside this list; an edge NACKs one it does not know.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mock => "mock",
            Self::OpenAi => "openai",
            Self::AzureOpenAi => "azure_openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }

    /// "mock, openai, azure_openai, anthropic, gemini", for error messages.
    pub fn known() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    /// The public endpoint used when no base URL is given. Azure has none (every resource has
    /// its own, `https://<resource>.openai.azure.com`) and the mock needs none.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::OpenAi => Some("https://api.openai.com/v1"),
            Self::Anthropic => Some("https://api.anthropic.com"),
            Self::Gemini => Some("https://generativelanguage.googleapis.com"),
            Self::Mock | Self::AzureOpenAi => None,
        }
    }

    /// Whether the kind calls a network upstream at all.
    pub fn has_endpoint(self) -> bool {
        self != Self::Mock
    }

    /// Azure's `api-version` and Anthropic's `anthropic-version` pin the upstream wire format;
    /// no other kind has such a setting.
    pub fn takes_api_version(self) -> bool {
        matches!(self, Self::AzureOpenAi | Self::Anthropic)
    }

    /// Hosted providers refuse every call without a key; OpenAI-compatible local servers
    /// (Ollama, vLLM) need none, and the mock ignores it.
    pub fn requires_api_key(self) -> bool {
        matches!(self, Self::AzureOpenAi | Self::Anthropic | Self::Gemini)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_by_its_stored_name() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ProviderKind::parse("OpenAI"), None);
        assert_eq!(
            ProviderKind::known(),
            "mock, openai, azure_openai, anthropic, gemini"
        );
    }
}
