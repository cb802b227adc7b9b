//! ES256 signing keys. They live in the database so every instance signs with the same key and
//! serves the same JWKS; each instance keeps the parsed keys in memory (parsing a PKCS#8 key
//! per signature would dominate the cost of a token).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::DecodingKey;
use serde::Serialize;
use serde_json::json;

use crate::db::{self, write_transaction, Conn};
use crate::error::Error;
use crate::secrets;

pub const ALGORITHM: &str = "ES256";

/// How long a served JWKS may be out of date after another instance rotated the key.
const JWKS_MAX_AGE: Duration = Duration::from_secs(5);
/// An unknown `kid` triggers a reload at most this often (it is usually a forged token).
const UNKNOWN_KID_RELOAD: Duration = Duration::from_secs(1);
/// How long an instance may go on signing with a key that another process has just retired.
/// Asking the database on every issuance cost a query per token; a retired key stays published
/// this much longer than the tokens it signed, so those tokens verify until they expire.
pub const SIGNING_KEY_RECHECK_SECS: i64 = 1;
const SIGNING_KEY_RECHECK: Duration = Duration::from_secs(SIGNING_KEY_RECHECK_SECS as u64);

/// A key row as stored.
pub struct StoredKey {
    pub kid: String,
    pub private_key: String,
    pub public_jwk: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// What operators see of a key: never its private part.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub algorithm: &'static str,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    pub current: bool,
}

fn generate(now: i64) -> Result<StoredKey, Error> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|e| Error::Internal(format!("key generation failed: {e}")))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|e| Error::Internal(format!("generated key does not parse: {e}")))?;
    // An uncompressed P-256 point: 0x04, then x and y, 32 bytes each.
    let point = pair.public_key().as_ref();
    if point.len() != 65 || point[0] != 4 {
        return Err(Error::Internal("unexpected public key encoding".into()));
    }
    let kid = secrets::random_id();
    let jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    });
    Ok(StoredKey {
        kid,
        private_key: STANDARD.encode(pkcs8.as_ref()),
        public_jwk: jwk.to_string(),
        created_at: now,
        retired_at: None,
    })
}

/// Creates the first key when there is none (at start; safe when instances start together).
pub async fn ensure_current(conn: &mut Conn, now: i64) -> Result<(), Error> {
    if db::keys::current(conn).await?.is_some() {
        return Ok(());
    }
    let key = generate(now)?;
    write_transaction(conn, async |conn| {
        if db::keys::current(conn).await?.is_none() {
            db::keys::insert(conn, &key).await?;
        }
        Ok(())
    })
    .await
}

/// Adds a new current key; the previous ones are retired but stay published until the tokens
/// they signed have expired.
pub async fn rotate(conn: &mut Conn, now: i64) -> Result<KeyInfo, Error> {
    let key = generate(now)?;
    write_transaction(conn, async |conn| {
        db::keys::retire_all(conn, now).await?;
        db::keys::insert(conn, &key).await
    })
    .await?;
    Ok(KeyInfo {
        kid: key.kid,
        algorithm: ALGORITHM,
        created_at: now,
        retired_at: None,
        current: true,
    })
}

pub async fn list(conn: &mut Conn) -> Result<Vec<KeyInfo>, Error> {
    let keys = db::keys::all(conn).await?;
    let current = keys
        .iter()
        .filter(|k| k.retired_at.is_none())
        .max_by_key(|k| (k.created_at, k.kid.clone()))
        .map(|k| k.kid.clone());
    Ok(keys
        .into_iter()
        .map(|k| KeyInfo {
            current: Some(&k.kid) == current.as_ref(),
            kid: k.kid,
            algorithm: ALGORITHM,
            created_at: k.created_at,
            retired_at: k.retired_at,
        })
        .collect())
}

/// The key that signs.
pub struct SigningKey {
    kid: String,
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl SigningKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// An ES256 signature in the JWS form (r || s, 64 bytes).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| Error::Internal(format!("signing failed: {e}")))
    }

    /// A compact JWS of `claims` with this key: header `alg`, `typ` and `kid`.
    pub fn jwt<C: serde::Serialize>(&self, typ: &str, claims: &C) -> Result<String, Error> {
        let header = json!({ "alg": ALGORITHM, "typ": typ, "kid": self.kid });
        let claims =
            serde_json::to_vec(claims).map_err(|e| Error::Internal(format!("claims: {e}")))?;
        let mut jws = URL_SAFE_NO_PAD.encode(header.to_string());
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let signature = self.sign(jws.as_bytes())?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jws)
    }
}

/// The keys one instance works with: the signing key, the public keys that still verify, and
/// the JWKS document, reloaded when the database says they changed.
pub struct KeyRing {
    loaded: RwLock<Arc<Loaded>>,
    /// Seconds a retired key stays published: the access token lifetime and the recheck.
    publish_retired_for: i64,
}

pub struct Loaded {
    pub signing: SigningKey,
    verifying: HashMap<String, DecodingKey>,
    pub jwks: String,
    at: Instant,
}

impl Loaded {
    /// Young enough to serve as the JWKS without asking the database.
    pub fn is_fresh(&self) -> bool {
        self.at.elapsed() < JWKS_MAX_AGE
    }

    pub fn decoding_key(&self, kid: &str) -> Option<&DecodingKey> {
        self.verifying.get(kid)
    }
}

impl KeyRing {
    pub async fn load(conn: &mut Conn, now: i64, publish_retired_for: i64) -> Result<Self, Error> {
        ensure_current(conn, now).await?;
        let publish_retired_for = publish_retired_for + SIGNING_KEY_RECHECK_SECS;
        let loaded = read(conn, now, publish_retired_for).await?;
        Ok(Self {
            loaded: RwLock::new(Arc::new(loaded)),
            publish_retired_for,
        })
    }

    pub fn get(&self) -> Arc<Loaded> {
        match self.loaded.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub async fn reload(&self, conn: &mut Conn, now: i64) -> Result<Arc<Loaded>, Error> {
        let fresh = Arc::new(read(conn, now, self.publish_retired_for).await?);
        match self.loaded.write() {
            Ok(mut guard) => *guard = fresh.clone(),
            Err(poisoned) => *poisoned.into_inner() = fresh.clone(),
        }
        Ok(fresh)
    }

    /// The keys to sign with now: reloaded at most a second after another process rotated the
    /// current key.
    pub async fn for_signing(&self, conn: &mut Conn, now: i64) -> Result<Arc<Loaded>, Error> {
        let loaded = self.get();
        if loaded.at.elapsed() < SIGNING_KEY_RECHECK {
            return Ok(loaded);
        }
        self.reload(conn, now).await
    }

    /// The keys to verify `kid` with, reloaded (rarely) when the `kid` is not known yet.
    pub async fn for_verifying(
        &self,
        conn: &mut Conn,
        kid: &str,
        now: i64,
    ) -> Result<Arc<Loaded>, Error> {
        let loaded = self.get();
        if loaded.verifying.contains_key(kid) || loaded.at.elapsed() < UNKNOWN_KID_RELOAD {
            return Ok(loaded);
        }
        self.reload(conn, now).await
    }

    /// The JWKS, at most a few seconds old.
    pub async fn for_jwks(&self, conn: &mut Conn, now: i64) -> Result<Arc<Loaded>, Error> {
        let loaded = self.get();
        if loaded.is_fresh() {
            return Ok(loaded);
        }
        self.reload(conn, now).await
    }
}

async fn read(conn: &mut Conn, now: i64, publish_retired_for: i64) -> Result<Loaded, Error> {
    let keys = db::keys::published(conn, now - publish_retired_for, now).await?;
    let current = keys
        .iter()
        .filter(|k| k.retired_at.is_none())
        .max_by_key(|k| (k.created_at, k.kid.clone()))
        .ok_or_else(|| Error::Internal("there is no current signing key".into()))?;
    let der = STANDARD
        .decode(&current.private_key)
        .map_err(|e| Error::Internal(format!("stored key {} is not base64: {e}", current.kid)))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        .map_err(|e| Error::Internal(format!("stored key {} does not parse: {e}", current.kid)))?;
    let signing = SigningKey {
        kid: current.kid.clone(),
        pair,
        rng: SystemRandom::new(),
    };
    let mut verifying = HashMap::new();
    let mut jwks = Vec::new();
    for key in &keys {
        let jwk: serde_json::Value = serde_json::from_str(&key.public_jwk)
            .map_err(|e| Error::Internal(format!("stored JWK {} is not JSON: {e}", key.kid)))?;
        let (Some(x), Some(y)) = (jwk["x"].as_str(), jwk["y"].as_str()) else {
            return Err(Error::Internal(format!(
                "stored JWK {} lacks x or y",
                key.kid
            )));
        };
        let decoding = DecodingKey::from_ec_components(x, y).map_err(|e| {
            Error::Internal(format!("stored JWK {} is not a P-256 key: {e}", key.kid))
        })?;
        verifying.insert(key.kid.clone(), decoding);
        jwks.push(jwk);
    }
    Ok(Loaded {
        signing,
        verifying,
        jwks: json!({ "keys": jwks }).to_string(),
        at: Instant::now(),
    })
}
