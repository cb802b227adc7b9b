//! Generated secrets and their digests. A `PlainSecret` exists only between generation and the
//! one response that shows it; storage only ever sees the digest. Secrets Keyframe must read
//! back (a tenant's URL secret) are sealed with the operator's `SecretKey` instead.

use std::fmt;

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
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

/// The operator's key (`KEYFRAME_SECRET_KEY`) that seals stored secrets: 256 bits for
/// AES-256-GCM.
#[derive(Clone)]
pub struct SecretKey([u8; SECRET_KEY_BYTES]);

const SECRET_KEY_BYTES: usize = 32;

/// Base64 with either padding, in the standard or the URL-safe alphabet: whatever the operator's
/// tool printed (`openssl rand -base64 32` pads, most URL-safe encoders do not).
const fn base64_engine(alphabet: &'static alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}
const BASE64_ANY_PADDING: [GeneralPurpose; 2] = [
    base64_engine(&alphabet::STANDARD),
    base64_engine(&alphabet::URL_SAFE),
];

impl SecretKey {
    /// 32 bytes as 64 hex characters or as base64/base64url (43 or 44 characters). The error
    /// never contains the value: it ends up in logs and terminals.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        let bytes = if raw.len() == 2 * SECRET_KEY_BYTES {
            decode_hex(raw)
        } else if matches!(raw.len(), 43 | 44) {
            BASE64_ANY_PADDING
                .iter()
                .find_map(|engine| engine.decode(raw).ok())
        } else {
            None
        };
        bytes
            .and_then(|b| <[u8; SECRET_KEY_BYTES]>::try_from(b).ok())
            .map(Self)
            .ok_or(
                "expected 32 bytes as 64 hex characters or as 43/44 base64 characters \
                 (for example from `openssl rand -hex 32`)",
            )
    }

    /// AES-256-GCM with a random 96-bit nonce; returns nonce ‖ ciphertext ‖ tag. `context` is
    /// authenticated, not stored: the same context must be given to `open`, so a sealed value
    /// moved to another row does not open there.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, crate::error::Error> {
        let failed = || crate::error::Error::Internal("cannot encrypt a secret".into());
        let key = RandomizedNonceKey::new(&AES_256_GCM, &self.0).map_err(|_| failed())?;
        let mut sealed = plaintext.to_vec();
        let nonce = key
            .seal_in_place_append_tag(Aad::from(context), &mut sealed)
            .map_err(|_| failed())?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plaintext of `seal`'s output, or `None` when it was sealed under another key or
    /// context, or altered.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        let key = RandomizedNonceKey::new(&AES_256_GCM, &self.0).ok()?;
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = key
            .open_in_place(nonce, Aad::from(context), &mut buffer)
            .ok()?;
        Some(plaintext.to_vec())
    }
}

fn decode_hex(raw: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16);
    raw.as_bytes()
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(*pair.get(1)?)?) as u8))
        .collect()
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
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

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn secret_keys_parse_from_hex_and_base64() {
        let expected: Vec<u8> = (0u8..32).collect();
        let padded = base64::engine::general_purpose::STANDARD.encode(&expected);
        let url_safe = URL_SAFE_NO_PAD.encode(&expected);
        for raw in [HEX_KEY, &HEX_KEY.to_uppercase(), &padded, &url_safe] {
            let key = SecretKey::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(key.0.to_vec(), expected, "{raw}");
        }
        // A key with `+`/`/` in the standard alphabet, and with `-`/`_` in the URL-safe one.
        let high = [0xfb; 32];
        for engine in [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::URL_SAFE,
        ] {
            let raw = engine.encode(high);
            assert_eq!(
                SecretKey::parse(&raw).map(|k| k.0).ok(),
                Some(high),
                "{raw}"
            );
        }
        assert!(SecretKey::parse(&format!(" {HEX_KEY}\n")).is_ok());
    }

    #[test]
    fn secret_keys_of_other_shapes_are_refused_without_echo() {
        let short = URL_SAFE_NO_PAD.encode([7u8; 31]);
        for bad in [
            "",
            "too short",
            &HEX_KEY[..62],
            &format!("{HEX_KEY}00"),
            &HEX_KEY.replace('0', "g"),
            &short,
            &"*".repeat(44),
            &"a".repeat(44),
        ] {
            let message = SecretKey::parse(bad).map(|_| ()).expect_err(bad);
            assert!(bad.is_empty() || !message.contains(bad), "{message}");
        }
    }

    #[test]
    fn secret_keys_never_print() {
        let key = SecretKey::parse(HEX_KEY).expect("key");
        assert_eq!(format!("{key:?}"), "[redacted]");
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_context() {
        let key = SecretKey::parse(HEX_KEY).expect("key");
        let other = SecretKey([9; 32]);
        let sealed = key.seal(b"hello", b"acme").expect("seal");
        assert_eq!(sealed.len(), NONCE_LEN + 5 + 16);
        assert_eq!(key.open(&sealed, b"acme").as_deref(), Some(&b"hello"[..]));
        assert_eq!(other.open(&sealed, b"acme"), None);
        assert_eq!(key.open(&sealed, b"beta"), None);
        let mut altered = sealed.clone();
        altered[NONCE_LEN] ^= 1;
        assert_eq!(key.open(&altered, b"acme"), None);
        assert_eq!(key.open(&sealed[..NONCE_LEN - 1], b"acme"), None);
        // A fresh nonce each time: the same plaintext never seals to the same bytes.
        assert_ne!(key.seal(b"hello", b"acme").expect("seal"), sealed);
    }
}
