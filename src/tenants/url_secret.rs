//! Each tenant's secret for OvenMediaEngine's SignedPolicy URLs: the HMAC key its
//! `<SignedPolicy><SecretKey>` holds. Unlike our own tokens, which we only ever compare with a
//! digest, this one must be read back to sign, so it is stored reversibly: sealed with the
//! operator's `KEYFRAME_SECRET_KEY` (AES-256-GCM, the tenant id authenticated with it) when one
//! is set, as given otherwise.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::db::{self, Conn};
use crate::error::Error;
use crate::secrets::{PlainSecret, SecretKey};
use crate::tenants::TenantId;

/// Sealed under the secret key: `v1:` + base64url(nonce ‖ ciphertext ‖ tag).
const SEALED: &str = "v1:";
/// Stored as given, because no secret key was configured when it was set.
const PLAIN: &str = "plain:";

/// Longer than any key an operator types into OvenMediaEngine's configuration, and HMAC-SHA1
/// hashes keys longer than its 64-byte block anyway.
const MAX_SECRET_BYTES: usize = 256;

/// The tenant's secret bytes, decrypted; None when the tenant has none. NotFound for an unknown
/// tenant.
pub async fn get(
    conn: &mut Conn,
    key: Option<&SecretKey>,
    tenant: &TenantId,
) -> Result<Option<Vec<u8>>, Error> {
    let stored = db::tenants::url_secret(conn, tenant)
        .await?
        .ok_or_else(|| unknown(tenant))?;
    stored
        .map(|stored| decode(key, tenant, &stored))
        .transpose()
}

/// A new random secret (32 random bytes as unpadded base64url text; the HMAC key is that text's
/// bytes, as OvenMediaEngine uses its configured string), stored, returned once.
pub async fn rotate(
    conn: &mut Conn,
    key: Option<&SecretKey>,
    tenant: &TenantId,
    now: i64,
) -> Result<PlainSecret, Error> {
    // Text rather than raw bytes: OvenMediaEngine's configuration holds a string, and the
    // operator pastes this one there.
    let secret = PlainSecret::generate("");
    store(conn, key, tenant, secret.expose(), now).await?;
    Ok(secret)
}

/// Stores an operator-chosen secret (from an existing OvenMediaEngine configuration).
pub async fn set(
    conn: &mut Conn,
    key: Option<&SecretKey>,
    tenant: &TenantId,
    secret: &str,
    now: i64,
) -> Result<(), Error> {
    validate(secret)?;
    store(conn, key, tenant, secret, now).await
}

/// The rules for a secret an operator chooses. The messages name the rule, never the secret.
fn validate(secret: &str) -> Result<(), Error> {
    if secret.is_empty() {
        return Err(Error::Invalid("the URL secret is empty".into()));
    }
    if secret.len() > MAX_SECRET_BYTES {
        return Err(Error::Invalid(format!(
            "the URL secret is longer than {MAX_SECRET_BYTES} bytes"
        )));
    }
    // A configuration file cannot hold these faithfully, so OvenMediaEngine would sign with a
    // different key than the one stored here.
    if secret.chars().any(char::is_control) {
        return Err(Error::Invalid(
            "the URL secret contains control characters".into(),
        ));
    }
    if secret.trim() != secret {
        return Err(Error::Invalid(
            "the URL secret begins or ends with whitespace".into(),
        ));
    }
    Ok(())
}

async fn store(
    conn: &mut Conn,
    key: Option<&SecretKey>,
    tenant: &TenantId,
    secret: &str,
    now: i64,
) -> Result<(), Error> {
    let stored = encode(key, tenant, secret)?;
    if db::tenants::set_url_secret(conn, tenant, &stored, now).await? {
        Ok(())
    } else {
        Err(unknown(tenant))
    }
}

fn encode(key: Option<&SecretKey>, tenant: &TenantId, secret: &str) -> Result<String, Error> {
    Ok(match key {
        Some(key) => {
            let sealed = key.seal(secret.as_bytes(), tenant.as_str().as_bytes())?;
            format!("{SEALED}{}", URL_SAFE_NO_PAD.encode(sealed))
        }
        None => format!("{PLAIN}{secret}"),
    })
}

fn decode(key: Option<&SecretKey>, tenant: &TenantId, stored: &str) -> Result<Vec<u8>, Error> {
    if let Some(plain) = stored.strip_prefix(PLAIN) {
        // Set before a key was configured; the next rotate or set seals it.
        return Ok(plain.as_bytes().to_vec());
    }
    let Some(encoded) = stored.strip_prefix(SEALED) else {
        return Err(Error::Internal(format!(
            "the stored URL secret of tenant {tenant} has an unknown format"
        )));
    };
    let Some(key) = key else {
        return Err(Error::Config(format!(
            "the URL secret of tenant {tenant} is encrypted, but KEYFRAME_SECRET_KEY is not set: \
             set it to the key it was stored with"
        )));
    };
    let sealed = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| {
        Error::Internal(format!(
            "the stored URL secret of tenant {tenant} is not valid base64url"
        ))
    })?;
    key.open(&sealed, tenant.as_str().as_bytes())
        .ok_or_else(|| {
            Error::Config(format!(
            "the URL secret of tenant {tenant} does not decrypt: KEYFRAME_SECRET_KEY is not the \
             key it was stored with (or the value was copied from another tenant)"
        ))
        })
}

fn unknown(tenant: &TenantId) -> Error {
    Error::NotFound(format!("unknown tenant {tenant}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::parse(&format!("{byte:02x}").repeat(32)).expect("key")
    }

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).expect("tenant id")
    }

    #[test]
    fn sealed_round_trip_hides_the_secret() {
        let (k, acme) = (key(1), tenant("acme"));
        let stored = encode(Some(&k), &acme, "1kU^b6").expect("encode");
        assert!(stored.starts_with("v1:"), "{stored}");
        assert!(!stored.contains("1kU^b6"), "{stored}");
        assert_eq!(decode(Some(&k), &acme, &stored).expect("decode"), b"1kU^b6");
        // A fresh nonce each time.
        assert_ne!(encode(Some(&k), &acme, "1kU^b6").expect("encode"), stored);
    }

    #[test]
    fn plain_round_trip_and_plain_read_with_a_key() {
        let acme = tenant("acme");
        let stored = encode(None, &acme, "1kU^b6").expect("encode");
        assert_eq!(stored, "plain:1kU^b6");
        assert_eq!(decode(None, &acme, &stored).expect("decode"), b"1kU^b6");
        // Stored before the operator configured a key: still readable.
        assert_eq!(
            decode(Some(&key(1)), &acme, &stored).expect("decode"),
            b"1kU^b6"
        );
    }

    #[test]
    fn a_wrong_or_missing_key_is_a_configuration_error_without_the_secret() {
        let acme = tenant("acme");
        let stored = encode(Some(&key(1)), &acme, "s3cret-value").expect("encode");
        for (k, needle) in [(Some(key(2)), "not the key"), (None, "not set")] {
            match decode(k.as_ref(), &acme, &stored) {
                Err(Error::Config(message)) => {
                    assert!(message.contains("KEYFRAME_SECRET_KEY"), "{message}");
                    assert!(message.contains(needle), "{message}");
                    assert!(!message.contains("s3cret"), "{message}");
                    assert!(!message.contains(&stored[3..]), "{message}");
                }
                other => panic!("expected a configuration error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_value_copied_to_another_tenant_does_not_decrypt() {
        let k = key(1);
        let stored = encode(Some(&k), &tenant("acme"), "s3cret-value").expect("encode");
        assert!(matches!(
            decode(Some(&k), &tenant("beta"), &stored),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn damaged_values_are_internal_errors() {
        let (k, acme) = (key(1), tenant("acme"));
        for stored in ["", "s3cret", "v2:abc", "v1:***"] {
            assert!(
                matches!(decode(Some(&k), &acme, stored), Err(Error::Internal(_))),
                "{stored}"
            );
        }
    }

    #[test]
    fn chosen_secrets_follow_the_rules() {
        assert!(validate("1kU^b6").is_ok());
        assert!(validate("a secret with inner spaces").is_ok());
        assert!(validate(&"x".repeat(MAX_SECRET_BYTES)).is_ok());
        for (bad, rule) in [
            ("", "empty"),
            (" s3cret", "whitespace"),
            ("s3cret ", "whitespace"),
            ("s3cret\u{a0}", "whitespace"),
            ("s3c\tret", "control"),
            ("s3cret\n", "control"),
            ("s3c\u{7f}ret", "control"),
            (&"x".repeat(MAX_SECRET_BYTES + 1), "longer"),
        ] {
            match validate(bad) {
                Err(Error::Invalid(message)) => {
                    assert!(message.contains(rule), "{bad:?}: {message}");
                    assert!(bad.is_empty() || !message.contains(bad), "{message}");
                }
                other => panic!("{bad:?}: expected a refusal, got {other:?}"),
            }
        }
    }
}
