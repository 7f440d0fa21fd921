//! A provider secret: never printed, and scrubbed from anything an upstream echoes back.

#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

impl ApiKey {
    pub fn new(key: String) -> Self {
        Self(key)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The plaintext, for the one header that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.0, "[redacted]")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_not_debug_printed() {
        let key = ApiKey::new("sk-abc".into());
        assert_eq!(key.redact("bad key sk-abc!"), "bad key [redacted]!");
        assert_eq!(format!("{key:?}"), "ApiKey(..)");
    }
}
