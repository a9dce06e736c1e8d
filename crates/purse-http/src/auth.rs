//! API keys: `purse_` followed by 48 hex digits (192 random bits). A key is shown once,
//! when it is issued; only its SHA-256 hash is stored, with a 14-character prefix that lets
//! people tell keys apart. Keys are high-entropy, so a fast hash is the right one here
//! (slow hashes are for passwords).

use std::io::Read;

use purse_core::{Role, Scope, Timestamp};
use purse_store::NewApiKey;
use sha2::{Digest, Sha256};

/// Every key starts with this, so a leaked key is recognisable (and scannable).
pub const KEY_PREFIX: &str = "purse_";
const RANDOM_BYTES: usize = 24;
const SHOWN_PREFIX_LEN: usize = 14;

/// The stored form of a key: lowercase hex SHA-256.
pub fn hash_key(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `text` has the shape of a key (before any lookup).
pub fn looks_like_key(text: &str) -> bool {
    text.strip_prefix(KEY_PREFIX)
        .is_some_and(|rest| rest.len() == RANDOM_BYTES * 2 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A new key: the secret to show once, and the record to store.
pub fn issue_key(name: &str, role: Role, scope: Scope, now: Timestamp) -> std::io::Result<(String, NewApiKey)> {
    let mut random = [0u8; RANDOM_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let secret = format!("{KEY_PREFIX}{hex}");
    let record = NewApiKey {
        prefix: secret[..SHOWN_PREFIX_LEN].to_owned(),
        hash: hash_key(&secret),
        name: name.to_owned(),
        role,
        scope,
        created_at: now,
    };
    Ok((secret, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_recognisable_and_stored_only_as_hashes() {
        let (a, record) = issue_key("ci", Role::Operator, Scope::Read, Timestamp(0)).unwrap();
        let (b, _) = issue_key("ci", Role::Operator, Scope::Read, Timestamp(0)).unwrap();
        assert_ne!(a, b);
        assert!(looks_like_key(&a) && !looks_like_key("purse_xyz") && !looks_like_key(&a[1..]));
        assert_eq!(record.hash, hash_key(&a));
        assert!(!record.hash.contains(&a[KEY_PREFIX.len()..]));
        assert_eq!(record.prefix, &a[..14]);
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
