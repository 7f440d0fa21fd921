//! Minting and hashing of bearer secrets (virtual keys, edge join tokens). Only SHA-256 hashes
//! are stored: the secrets carry 192 random bits, so a fast hash is enough and a lookup by hash
//! stays a single index probe.

use rand::RngCore;
use sha2::{Digest, Sha256};

pub const VIRTUAL_KEY_PREFIX: &str = "tg_";
pub const JOIN_TOKEN_PREFIX: &str = "tgj_";
/// Characters of a virtual key shown in listings so people can tell keys apart.
const DISPLAY_PREFIX_LEN: usize = 11;

/// A freshly minted secret: the plaintext is handed out once, the hash is what we keep.
pub struct MintedSecret {
    pub plaintext: String,
    pub hash: [u8; 32],
}

impl MintedSecret {
    pub fn display_prefix(&self) -> String {
        self.plaintext.chars().take(DISPLAY_PREFIX_LEN).collect()
    }
}

pub fn mint(prefix: &str) -> MintedSecret {
    let mut random = [0u8; 24];
    rand::rng().fill_bytes(&mut random);
    let plaintext = format!("{prefix}{}", hex::encode(random));
    let hash = sha256(&plaintext);
    MintedSecret { plaintext, hash }
}

pub fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_are_unique_and_hash_to_what_is_stored() {
        let a = mint(VIRTUAL_KEY_PREFIX);
        let b = mint(VIRTUAL_KEY_PREFIX);
        assert_ne!(a.plaintext, b.plaintext);
        assert!(a.plaintext.starts_with("tg_"));
        assert_eq!(a.plaintext.len(), 3 + 48);
        assert_eq!(sha256(&a.plaintext), a.hash);
        assert_eq!(a.display_prefix().len(), 11);
    }
}
