//! Encryption at rest for provider API keys: AES-256-GCM under the master key given by
//! `TOLLGATE_MASTER_KEY`, so a database dump alone never reveals a provider secret.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("TOLLGATE_MASTER_KEY must be 64 hex characters (32 bytes)")]
    BadMasterKey,
    #[error("ciphertext is too short or was not made with this master key")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
    #[error("decrypted secret is not UTF-8")]
    NotUtf8,
}

/// The 256-bit key that protects provider secrets. Never logged (no `Debug` of the bytes).
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_hex(hex_key: &str) -> Result<Self, CryptoError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| CryptoError::BadMasterKey)?;
        if bytes.len() != 32 {
            return Err(CryptoError::BadMasterKey);
        }
        let key = Key::<Aes256Gcm>::from_slice(&bytes);
        Ok(Self {
            cipher: Aes256Gcm::new(key),
        })
    }

    /// Returns nonce ‖ ciphertext ‖ tag.
    pub fn encrypt(&self, plaintext: &str) -> Result<Vec<u8>, CryptoError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .map_err(|_| CryptoError::Encrypt)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    pub fn decrypt(&self, sealed: &[u8]) -> Result<String, CryptoError> {
        if sealed.len() <= NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plaintext).map_err(|_| CryptoError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn round_trips_and_uses_a_fresh_nonce_each_time() {
        let key = MasterKey::from_hex(KEY).unwrap();
        let a = key.encrypt("sk-secret").unwrap();
        let b = key.encrypt("sk-secret").unwrap();
        assert_ne!(a, b);
        assert_eq!(key.decrypt(&a).unwrap(), "sk-secret");
        assert!(!a.windows(9).any(|w| w == b"sk-secret"));
    }

    #[test]
    fn rejects_tampering_and_wrong_keys() {
        let key = MasterKey::from_hex(KEY).unwrap();
        let mut sealed = key.encrypt("sk-secret").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(key.decrypt(&sealed), Err(CryptoError::Decrypt)));
        let other = MasterKey::from_hex(&"ff".repeat(32)).unwrap();
        let sealed = key.encrypt("sk-secret").unwrap();
        assert!(other.decrypt(&sealed).is_err());
        assert!(key.decrypt(&[1, 2, 3]).is_err());
    }

    #[test]
    fn master_key_must_be_32_bytes_of_hex() {
        assert!(MasterKey::from_hex("abcd").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
    }
}
