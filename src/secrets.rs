//! Generated secrets and their digests. A `PlainSecret` exists only between generation and the
//! one response that shows it; storage only ever sees the digest.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// 256 bits from the operating system's CSPRNG (through rand's reseeding ChaCha thread RNG).
const SECRET_BYTES: usize = 32;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A random identifier (not a secret): 128 bits, URL-safe.
pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}

#[derive(Clone, PartialEq, Eq)]
pub struct PlainSecret(String);

impl PlainSecret {
    /// A new secret: a readable prefix (so secret scanners and people can tell what leaked)
    /// followed by 256 random bits.
    pub fn generate(prefix: &str) -> Self {
        Self(format!(
            "{prefix}{}",
            URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>())
        ))
    }

    /// For generators that build their own format (a prefix, a checksum) around random bits.
    pub(crate) fn from_string(secret: String) -> Self {
        Self(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn digest(&self) -> String {
        digest(&self.0)
    }
}

impl fmt::Debug for PlainSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for PlainSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// SHA-256 of a high-entropy secret. A slow hash adds nothing against guessing 256 random bits
/// and would only slow every token request.
pub fn digest(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// Compares a presented secret with a stored digest in constant time.
pub fn matches_digest(presented: &str, stored_digest: &str) -> bool {
    digest(presented)
        .as_bytes()
        .ct_eq(stored_digest.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_prefixed_long_and_distinct() {
        let a = PlainSecret::generate("kf_cs_");
        let b = PlainSecret::generate("kf_cs_");
        assert!(a.expose().starts_with("kf_cs_"));
        // 32 bytes in unpadded base64url are 43 characters.
        assert_eq!(a.expose().len(), "kf_cs_".len() + 43);
        assert_ne!(a, b);
    }

    #[test]
    fn secrets_never_print() {
        let s = PlainSecret::generate("kf_cs_");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
    }

    #[test]
    fn digest_matches_only_the_same_secret() {
        let s = PlainSecret::generate("kf_cs_");
        let d = s.digest();
        assert!(matches_digest(s.expose(), &d));
        assert!(!matches_digest("kf_cs_other", &d));
        assert_ne!(d, s.expose());
    }
}
