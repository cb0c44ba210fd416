//! The hash of a session token: how every part of the service recognises a token without keeping it.
//!
//! A session token is the secret a participant gets from Join and presents on every later call. The
//! service keeps only its SHA-256, in memory, in a single node's database, and in a cluster's KV
//! buckets, so a leaked store or bucket gives nobody a working token. [`TokenHash`] is that hash, one
//! type for all of them: a single node's sessions table, its redb store (the 32 bytes as the key), and
//! a cluster's members API (the 64 lower-case hex digits as the KV key).

use std::fmt;

use sha2::{Digest, Sha256};

/// The SHA-256 of a session token: what the service keeps, in memory and in storage, to recognise a
/// token without holding the secret itself.
///
/// Its `Debug` form shows only the first two bytes, enough to tell sessions apart in a test failure;
/// [`TokenHash::to_hex`] is the full form that keys a session in storage.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// The hash of a token as presented by a caller.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// The hash whose 32 bytes are `bytes`, as read back from storage.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes of the hash, as a single node's store keys its sessions.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash as 64 lower-case hex digits, two per byte: the form that keys a session in a
    /// cluster's KV bucket and names it in a left event's idempotency key.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0
            .iter()
            .fold(String::with_capacity(64), |mut out, byte| {
                let _ = write!(out, "{byte:02x}");
                out
            })
    }

    /// The hash that [`TokenHash::to_hex`] wrote as `hex`, if `hex` is 64 hex digits (two per byte,
    /// either case).
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut hash = [0; 32];
        for (byte, pair) in hash.iter_mut().zip(hex.as_bytes().chunks(2)) {
            let text = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(text, 16).ok()?;
        }
        Some(Self(hash))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_hash_is_the_sha256_of_the_token_and_equal_tokens_hash_equal() {
        // SHA-256 of "abc", FIPS 180-2 appendix B.1.
        assert_eq!(
            TokenHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(TokenHash::of("secret"), TokenHash::of("secret"));
        assert_ne!(TokenHash::of("secret"), TokenHash::of("Secret"));
    }

    #[test]
    fn hex_is_lower_case_two_digits_per_byte() {
        let hash = TokenHash::from_bytes([0x0f; 32]);
        assert_eq!(hash.to_hex(), "0f".repeat(32));
        assert_eq!(hash.as_bytes(), &[0x0f; 32]);
    }

    #[test]
    fn debug_shows_only_the_first_two_bytes() {
        let hash = TokenHash::from_bytes([0xab; 32]);
        assert_eq!(format!("{hash:?}"), "TokenHash(abab..)");
    }

    #[test]
    fn what_is_not_64_hex_digits_names_no_hash() {
        for key in ["", "ab", &"g".repeat(64), &"0".repeat(63), &"0".repeat(65)] {
            assert_eq!(TokenHash::from_hex(key), None, "{key:?}");
        }
    }

    proptest! {
        #[test]
        fn hex_reads_back_as_the_same_hash(bytes in proptest::array::uniform32(any::<u8>())) {
            let hash = TokenHash::from_bytes(bytes);
            prop_assert_eq!(TokenHash::from_hex(&hash.to_hex()), Some(hash));
            prop_assert_eq!(TokenHash::from_hex(&hash.to_hex().to_uppercase()), Some(hash));
        }
    }
}
