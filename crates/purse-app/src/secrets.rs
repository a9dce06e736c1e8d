//! Secrets and how they are kept: API keys (`purse_` and 48 hex digits, 192 random bits;
//! only their SHA-256 is stored, with a 14-character prefix that tells them apart; keys are
//! high-entropy, so a fast hash is the right one), session tokens, and passwords (argon2id
//! with the crate's defaults, 19 MiB and 2 passes, the OWASP recommendation, and a random
//! salt; only the PHC string is stored).

use std::io::Read;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use purse_core::{Role, Scope, Timestamp};
use purse_store::NewApiKey;
use sha2::{Digest, Sha256};

use crate::{AppError, AppResult};

/// Every key starts with this, so a leaked key is recognisable (and scannable).
pub const KEY_PREFIX: &str = "purse_";
const RANDOM_BYTES: usize = 24;
const SHOWN_PREFIX_LEN: usize = 14;
pub const PASSWORD_LEN_MIN: usize = 10;
pub const PASSWORD_LEN_MAX: usize = 256;

/// The stored form of a key or a session token: lowercase hex SHA-256.
pub fn hash_key(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

pub use purse_core::text::hex;

/// Whether `text` has the shape of a key (before any lookup).
pub fn looks_like_key(text: &str) -> bool {
    text.strip_prefix(KEY_PREFIX)
        .is_some_and(|rest| rest.len() == RANDOM_BYTES * 2 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `N` random bytes from the kernel: for keys, session tokens and salts.
pub fn random_bytes<const N: usize>() -> AppResult<[u8; N]> {
    let mut random = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut random))
        .map_err(|e| AppError::Internal(format!("reading /dev/urandom: {e}")))?;
    Ok(random)
}

/// `N` random bytes as lowercase hex.
pub fn random_hex<const N: usize>() -> AppResult<String> {
    Ok(hex(&random_bytes::<N>()?))
}

/// A new key: the secret to show once, and the record to store.
pub fn issue_key(name: &str, role: Role, scope: Scope, now: Timestamp) -> AppResult<(String, NewApiKey)> {
    let secret = format!("{KEY_PREFIX}{}", random_hex::<RANDOM_BYTES>()?);
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

/// An argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> AppResult<String> {
    let salt = random_bytes::<16>()?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AppError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(e.to_string()))
}

/// Whether `password` matches the stored PHC string.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash with the cost of a real one, verified against when the e-mail is unknown so that
/// a wrong e-mail takes as long to refuse as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password, never a real one").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_are_hex_sha256() {
        assert_eq!(hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

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

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "salted");
    }
}
