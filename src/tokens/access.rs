//! Access tokens: JWTs per RFC 9068, signed ES256 with the current key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::Error;
use crate::keys::{KeyRing, Loaded, SigningKey, ALGORITHM};

/// RFC 9068 §2.1: the JWT `typ` of an access token.
pub const TYP: &str = "at+jwt";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub tenant: String,
    /// The token family (grant) this token belongs to: revoking the family ends it.
    pub sid: String,
}

pub fn encode(key: &SigningKey, claims: &AccessClaims) -> Result<String, Error> {
    let header = json!({ "alg": ALGORITHM, "typ": TYP, "kid": key.kid() });
    let claims = serde_json::to_vec(claims).map_err(|e| Error::Internal(format!("claims: {e}")))?;
    let mut jws = URL_SAFE_NO_PAD.encode(header.to_string());
    jws.push('.');
    jws.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let signature = key.sign(jws.as_bytes())?;
    jws.push('.');
    jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(jws)
}

/// The kid a token claims to be signed with, if it looks like one of our access tokens.
pub fn kid(token: &str) -> Option<String> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(TYP) {
        return None;
    }
    header.kid
}

/// The claims of a token signed by one of `keys`, issued by us for our audience and not
/// expired at `now`. Anything else is `None`: introspection answers `active: false` for all.
pub fn verify(
    keys: &Loaded,
    token: &str,
    issuer: &str,
    audience: &str,
    now: i64,
) -> Option<AccessClaims> {
    let kid = kid(token)?;
    let key = keys.decoding_key(&kid)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    // `now` decides expiry (tested without sleeping), not the library's clock.
    validation.validate_exp = false;
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
        .ok()?
        .claims;
    (claims.exp > now).then_some(claims)
}

/// `verify` against the ring, reloading it when another instance introduced a new key.
pub fn verify_with(
    ring: &KeyRing,
    conn: &mut crate::db::DbConnection,
    token: &str,
    issuer: &str,
    audience: &str,
    now: i64,
) -> Result<Option<AccessClaims>, Error> {
    let Some(kid) = kid(token) else {
        return Ok(None);
    };
    let keys = ring.for_verifying(conn, &kid, now)?;
    Ok(verify(&keys, token, issuer, audience, now))
}
