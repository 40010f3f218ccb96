//! Device passwords: made here, shown once, kept only as Mosquitto's own hash.
//!
//! The hash is Mosquitto 2's `$7$` format (`mosquitto_passwd`'s default), PBKDF2-HMAC-SHA512
//! over a random 12-byte salt, 64-byte output, both base64 (standard, padded):
//!
//! ```text
//! $7$101$<salt>$<hash>          e.g. $7$101$YWJjZGVmZ2hpamts$Xy9…==
//! ```
//!
//! One hash serves both brokers: the embedded broker checks a device's password against it,
//! and the password file generated for Mosquitto carries it as is. The passwords themselves are
//! 24 random bytes (192 bits, base64url), so the iteration count only has to match
//! Mosquitto's; a stolen store does not reveal them. Comparison is constant-time (ring).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::pbkdf2;
use std::num::NonZeroU32;

/// Mosquitto's default iteration count for `$7$` hashes.
pub const ITERATIONS: u32 = 101;
const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;

/// A new random device password (32 characters of base64url).
pub fn new_password() -> String {
    let bytes: [u8; 24] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The `$7$` hash of `password` with a fresh random salt.
pub fn hash(password: &str) -> String {
    let salt: [u8; SALT_LEN] = rand::random();
    hash_with(password, &salt, ITERATIONS)
}

fn hash_with(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut out = [0u8; HASH_LEN];
    let n = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA512,
        n,
        salt,
        password.as_bytes(),
        &mut out,
    );
    format!(
        "$7${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(out)
    )
}

/// Whether `password` matches a `$7$` hash (as written by [`hash`] or `mosquitto_passwd`).
/// Anything that is not a well-formed `$7$` hash matches nothing.
pub fn verify(password: &str, hashed: &str) -> bool {
    let Some(rest) = hashed.strip_prefix("$7$") else {
        return false;
    };
    let mut parts = rest.split('$');
    let (Some(iter), Some(salt), Some(want), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Some(iter) = iter.parse::<u32>().ok().and_then(NonZeroU32::new) else {
        return false;
    };
    // Mosquitto caps nothing; we refuse absurd counts so a bad hash cannot stall the broker.
    if iter.get() > 1_000_000 {
        return false;
    }
    let (Ok(salt), Ok(want)) = (STANDARD.decode(salt), STANDARD.decode(want)) else {
        return false;
    };
    if want.len() != HASH_LEN {
        return false;
    }
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA512,
        iter,
        &salt,
        password.as_bytes(),
        &want,
    )
    .is_ok()
}

/// Whether `s` looks like a `$7$` hash (for reading files and records).
pub fn is_hash(s: &str) -> bool {
    s.starts_with("$7$") && s.split('$').count() == 5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_and_nothing_else_does() {
        let pw = new_password();
        assert_eq!(pw.len(), 32);
        let h = hash(&pw);
        assert!(h.starts_with("$7$101$"), "{h}");
        assert!(is_hash(&h));
        assert!(verify(&pw, &h));
        assert!(!verify("wrong", &h));
        assert!(!verify(&pw, "plain"));
        assert!(!verify(&pw, "$7$101$$"));
        assert!(!verify(&pw, "$7$0$AAAA$AAAA"));
        assert_ne!(hash(&pw), h, "every hash has its own salt");
    }

    #[test]
    fn the_hash_is_pbkdf2_sha512_with_mosquittos_layout() {
        // The layout mosquitto_passwd writes: 12-byte salt (16 base64 chars), 64-byte hash
        // (88 base64 chars). node/tests/floor_mosquitto.rs checks real mosquitto_passwd output.
        let h = hash_with("secret", b"0123456789ab", 101);
        let parts: Vec<&str> = h.split('$').collect();
        assert_eq!(parts[..3], ["", "7", "101"]);
        assert_eq!(parts[3], "MDEyMzQ1Njc4OWFi");
        assert_eq!(parts[4].len(), 88);
        assert!(verify("secret", &h));
    }
}
