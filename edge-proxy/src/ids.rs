//! Unique ids minted per request. `uuid`'s own constructors ask the kernel for randomness on
//! every call (a `getrandom` syscall each, two per request); these draw from the thread's
//! CSPRNG (`rand::rng()`, seeded from the OS and reseeded periodically), which is as unique
//! and costs no syscall.

use rand::Rng;
use uuid::{Builder, Uuid};

/// A random (version 4) UUID.
pub fn random_uuid() -> Uuid {
    Builder::from_random_bytes(rand::rng().random()).into_uuid()
}

/// A time-ordered (version 7) UUID for `unix_ms`: ids minted later sort later, which keeps
/// the ledger's index on event ids append-mostly.
pub fn time_ordered_uuid(unix_ms: u64) -> Uuid {
    Builder::from_unix_timestamp_millis(unix_ms, &rand::rng().random()).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_order() {
        let random = random_uuid();
        assert_eq!(random.get_version_num(), 4);
        assert_ne!(random, random_uuid());
        let earlier = time_ordered_uuid(1_700_000_000_000);
        let later = time_ordered_uuid(1_700_000_000_001);
        assert_eq!(earlier.get_version_num(), 7);
        assert!(earlier < later);
    }
}
