//! Access tokens: JWTs per RFC 9068, signed ES256 with the current key.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::exchange::EXCHANGED_SID_PREFIX;
use super::TokenService;
use crate::clients::Client;
use crate::db::{self, Conn};
use crate::error::Error;
use crate::keys::{KeyRing, Loaded, SigningKey};

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
    /// Left out when the grant has no scopes (RFC 9068 §2.2.3 asks for it when there are).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    pub tenant: String,
    /// The token family (grant) this token belongs to: revoking the family ends it.
    pub sid: String,
}

pub fn encode(key: &SigningKey, claims: &AccessClaims) -> Result<String, Error> {
    key.jwt(TYP, claims)
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

/// How many verified tokens an instance remembers: a few hundred bytes each.
const VERIFIED_CAPACITY: usize = 4096;

/// Access tokens whose signature and claims already verified, by the SHA-256 of the whole
/// token. Resource servers introspect the same token on every call it authorizes, and the
/// ES256 verification was a third of an introspection's cost. Only the exact bytes that
/// verified hit the cache, so a changed token is verified afresh; expiry is checked on every
/// hit, and liveness (revocation, membership) is never cached here.
pub struct VerifiedTokens {
    cache: quick_cache::sync::Cache<[u8; 32], Arc<AccessClaims>>,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(VERIFIED_CAPACITY),
        }
    }
}

impl VerifiedTokens {
    /// `verify` against the ring (reloaded when another instance introduced a new key),
    /// answered from the cache when these exact bytes verified before.
    pub async fn verify(
        &self,
        ring: &KeyRing,
        conn: &mut Conn,
        token: &str,
        issuer: &str,
        audience: &str,
        now: i64,
    ) -> Result<Option<AccessClaims>, Error> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.cache.get(&key) {
            return Ok((claims.exp > now).then(|| AccessClaims::clone(&claims)));
        }
        let Some(kid) = kid(token) else {
            return Ok(None);
        };
        let keys = ring.for_verifying(conn, &kid, now).await?;
        let claims = verify(&keys, token, issuer, audience, now);
        if let Some(claims) = &claims {
            self.cache.insert(key, Arc::new(claims.clone()));
        }
        Ok(claims)
    }
}

impl TokenService {
    /// An access token that is genuine, unexpired and still backed by everything it depends on
    /// (family, user, membership, not revoked), with the user's name.
    pub async fn verify_access_token(
        &self,
        conn: &mut Conn,
        token: &str,
        now: i64,
    ) -> Result<Option<(AccessClaims, Option<String>)>, Error> {
        let Some(claims) = self
            .verified
            .verify(&self.keys, conn, token, &self.issuer, &self.audience, now)
            .await?
        else {
            return Ok(None);
        };
        if claims.sid.starts_with(EXCHANGED_SID_PREFIX) {
            let principal = self.exchanged_principal(conn, &claims, now).await?;
            return Ok(principal.map(|p| (claims, p.username)));
        }
        let username = db::tokens::access_token_username(
            conn,
            &claims.sid,
            &claims.jti,
            &claims.sub,
            &claims.tenant,
        )
        .await?;
        Ok(username.map(|name| (claims, Some(name))))
    }

    /// RFC 7662 for a JWT: what it claims, while it is genuine and still backed.
    pub(super) async fn introspect_access(
        &self,
        conn: &mut Conn,
        token: &str,
        now: i64,
    ) -> Result<Option<Value>, Error> {
        let Some((claims, username)) = self.verify_access_token(conn, token, now).await? else {
            return Ok(None);
        };
        let mut answer = json!({
            "active": true,
            "token_type": "Bearer",
            "scope": claims.scope,
            "client_id": claims.client_id,
            "sub": claims.sub,
            "tenant": claims.tenant,
            "exp": claims.exp,
            "iat": claims.iat,
            "iss": claims.iss,
            "aud": claims.aud,
            "jti": claims.jti,
        });
        // A system token's JWT speaks for the tenant: it has no username.
        if let Some(username) = username {
            answer["username"] = json!(username);
        }
        Ok(Some(answer))
    }

    /// Listed as revoked until it expires, when it is the calling client's.
    pub(super) async fn revoke_access(
        &self,
        conn: &mut Conn,
        client: &Client,
        token: &str,
        now: i64,
    ) -> Result<(), Error> {
        if let Some(claims) = self
            .verified
            .verify(&self.keys, conn, token, &self.issuer, &self.audience, now)
            .await?
        {
            if claims.client_id == client.client_id {
                db::tokens::revoke_access_token(conn, &claims.jti, claims.exp).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod service_tests {
    use super::super::testing::*;
    use crate::config::TokenSettings;

    #[test]
    fn access_tokens_expire_at_their_ttl() {
        let f = fixture(TokenSettings::default());
        let pair = f.password("pw", T0).expect("grant");
        assert_eq!(pair.expires_in, 600);
        assert!(f.active(&pair.access_token, T0 + 599));
        assert!(!f.active(&pair.access_token, T0 + 600));
    }

    #[test]
    fn remembered_verifications_still_check_bytes_expiry_and_revocation() {
        let f = fixture(TokenSettings::default());
        let jwt = f.password("pw", T0).expect("grant").access_token;
        assert!(f.active(&jwt, T0 + 1));
        assert!(f.active(&jwt, T0 + 2), "answered again from the cache");
        // Another signature over the same header and claims is not the remembered token.
        let (signed, signature) = jwt.rsplit_once('.').expect("three parts");
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let forged = format!("{signed}.{flipped}{}", &signature[1..]);
        assert!(!f.active(&forged, T0 + 2));
        // Revocation is a liveness question, never answered from the cache.
        let mut conn = f.conn();
        block_on(f.service.revoke(&mut conn, &f.client, &jwt, T0 + 3)).expect("revoke");
        assert!(!f.active(&jwt, T0 + 4));
    }
}
