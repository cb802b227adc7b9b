//! Stream playback tokens: what Flussonic's `Auth.CreateApiToken` hands a viewer. A compact JWS
//! (`typ` `stream+jwt`) signed with the current key, so that media servers verify it offline
//! against our JWKS; a row per token so that a tenant can revoke its own and publish the list.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::api::{Credential, Principal, MANAGE_SCOPE};
use super::TokenService;
use crate::db::stream_tokens::StreamTokenRow;
use crate::db::{self, Conn};
use crate::error::Error;
use crate::keys::Loaded;
pub use crate::params::ParamError;
use crate::params::{invalid, Params};
use crate::secrets;
use crate::tenants::TenantId;

/// The JWT `typ` that tells a stream token from an access token (RFC 8725 §3.11).
pub const TYP: &str = "stream+jwt";
/// Flussonic's default.
pub const DEFAULT_TTL: i64 = 3600;
/// Beyond any plausible use, and far from overflowing `iat + ttl`.
pub const MAX_TTL: i64 = 100 * 365 * 86_400;
/// 9999-12-31T23:59:59Z: archive times past it are typos, not plans.
const MAX_UNIX_SECONDS: i64 = 253_402_300_799;
const MAX_STREAM_CHARS: usize = 255;

/// What the holder may do with the stream.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Perm {
    pub live: bool,
    pub dvr: bool,
    pub copy: bool,
}

/// The part of the archive a token opens, unix seconds, bounds inclusive; `0` is unbounded.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

impl Window {
    /// Whether `[start, end]` lies inside the window.
    pub fn contains(&self, start: i64, end: i64) -> bool {
        (self.from == 0 || start >= self.from) && (self.to == 0 || end <= self.to)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamClaims {
    pub iss: String,
    /// The stream uid.
    pub sub: String,
    pub tenant: String,
    pub iat: i64,
    pub nbf: i64,
    /// Absent for a token without expiry (ttl 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    pub jti: String,
    pub perm: Perm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
}

/// A validated `Auth.CreateApiToken`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStreamToken {
    pub stream: String,
    /// 0: no expiry.
    pub ttl: i64,
    pub perm: Perm,
    pub window: Option<Window>,
}

/// A stream uid: 1–255 printable characters.
pub fn validate_stream(stream: &str) -> Result<(), ParamError> {
    let chars = stream.chars().count();
    if chars == 0 || chars > MAX_STREAM_CHARS {
        return Err(invalid(format!(
            "stream must be 1 to {MAX_STREAM_CHARS} characters"
        )));
    }
    if stream.chars().any(char::is_control) {
        return Err(invalid("stream must be printable (no control characters)"));
    }
    Ok(())
}

impl NewStreamToken {
    /// The params of `Auth.CreateApiToken` under Flussonic's rules. `max_ttl` is the operator's
    /// `--stream-token-max-ttl`: it caps every ttl and forbids ttl 0.
    pub fn from_params(
        params: Option<&Value>,
        method: &str,
        max_ttl: Option<i64>,
    ) -> Result<Self, ParamError> {
        let mut p = Params::new(params, method)?;
        let stream = p
            .string("stream")?
            .ok_or_else(|| invalid("stream is required"))?;
        validate_stream(&stream)?;
        let ttl = p
            .unsigned("ttl", "seconds", MAX_TTL)?
            .unwrap_or(DEFAULT_TTL);
        if let Some(max) = max_ttl {
            if ttl == 0 {
                return Err(invalid(format!(
                    "ttl 0 (no expiry) is not allowed here: ttl must be 1 to {max} seconds"
                )));
            }
            if ttl > max {
                return Err(invalid(format!("ttl must be at most {max} seconds")));
            }
        }
        let perm = Perm {
            live: p.flag("live")?,
            dvr: p.flag("dvr")?,
            copy: p.flag("copy")?,
        };
        let from = p.unsigned("from", "unix seconds", MAX_UNIX_SECONDS)?;
        let to = p.unsigned("to", "unix seconds", MAX_UNIX_SECONDS)?;
        p.finish()?;
        if !(perm.live || perm.dvr || perm.copy) {
            return Err(invalid(
                "at least one of live, dvr and copy must be true: this token could do nothing",
            ));
        }
        if (from.is_some() || to.is_some()) && !(perm.dvr || perm.copy) {
            return Err(invalid(
                "from and to bound the archive: they need dvr or copy to be true",
            ));
        }
        let (from, to) = (from.unwrap_or(0), to.unwrap_or(0));
        if from != 0 && to != 0 && to < from {
            return Err(invalid("to must not be before from"));
        }
        let window = (from != 0 || to != 0).then_some(Window { from, to });
        Ok(Self {
            stream,
            ttl,
            perm,
            window,
        })
    }
}

/// What `Auth.RevokeToken` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    Token(String),
    Jti(String),
}

impl RevokeTarget {
    pub fn from_params(params: Option<&Value>, method: &str) -> Result<Self, ParamError> {
        let mut p = Params::new(params, method)?;
        let token = p.string("token")?;
        let jti = p.string("jti")?;
        p.finish()?;
        match (token, jti) {
            (Some(token), None) if !token.is_empty() => Ok(RevokeTarget::Token(token)),
            (None, Some(jti)) if !jti.is_empty() && jti.len() <= 64 => Ok(RevokeTarget::Jti(jti)),
            (None, None) => Err(invalid("token or jti is required")),
            (Some(_), Some(_)) => Err(invalid("give token or jti, not both")),
            (Some(_), None) => Err(invalid("token must not be empty")),
            (None, Some(_)) => Err(invalid("jti must be 1 to 64 characters")),
        }
    }
}

/// What a viewer asks a media server for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Live,
    Dvr,
    Copy,
}

impl Action {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "live" => Some(Action::Live),
            "dvr" => Some(Action::Dvr),
            "copy" => Some(Action::Copy),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Live => "live",
            Action::Dvr => "dvr",
            Action::Copy => "copy",
        }
    }
}

/// A request to check: the action and, for the archive, the span of archive time asked
/// (`None`: the request names no archive time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    pub action: Action,
    pub archive: Option<(i64, i64)>,
}

/// Why a stream token does not allow what was asked: short, for a media server's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("no token")]
    Missing,
    #[error("not a valid stream token")]
    Invalid,
    #[error("not valid yet")]
    NotYetValid,
    #[error("expired")]
    Expired,
    #[error("revoked")]
    Revoked,
    #[error("token is for another stream")]
    WrongStream,
    #[error("{} not permitted", .0.as_str())]
    NotPermitted(Action),
    #[error("archive time outside the token's window")]
    OutsideWindow,
}

impl StreamClaims {
    /// Whether these (verified, live) claims allow `asked` on `stream`.
    pub fn allows(&self, stream: Option<&str>, asked: Option<Asked>) -> Result<(), Denial> {
        if stream.is_some_and(|s| s != self.sub) {
            return Err(Denial::WrongStream);
        }
        let Some(asked) = asked else {
            return Ok(());
        };
        let permitted = match asked.action {
            Action::Live => self.perm.live,
            Action::Dvr => self.perm.dvr,
            Action::Copy => self.perm.copy,
        };
        if !permitted {
            return Err(Denial::NotPermitted(asked.action));
        }
        if let (Action::Dvr | Action::Copy, Some((start, end)), Some(window)) =
            (asked.action, asked.archive, self.window)
        {
            if !window.contains(start, end) {
                return Err(Denial::OutsideWindow);
            }
        }
        Ok(())
    }

    /// Seconds until the token expires (`None`: never).
    pub fn remaining(&self, now: i64) -> Option<i64> {
        self.exp.map(|exp| exp - now)
    }
}

/// The claims of a stream token signed by one of `keys` and issued by us, valid at `now`
/// (`nbf` ≤ now < `exp`). Revocation is the caller's to check.
pub fn verify(keys: &Loaded, token: &str, issuer: &str, now: i64) -> Result<StreamClaims, Denial> {
    let claims = genuine(keys, token, issuer)?;
    claims.in_time(now)?;
    Ok(claims)
}

impl StreamClaims {
    fn in_time(&self, now: i64) -> Result<(), Denial> {
        if self.nbf > now {
            return Err(Denial::NotYetValid);
        }
        if self.exp.is_some_and(|exp| exp <= now) {
            return Err(Denial::Expired);
        }
        Ok(())
    }
}

/// How many verified stream tokens an instance remembers: a few hundred bytes each.
const VERIFIED_CAPACITY: usize = 4096;

/// Stream tokens whose signature already verified, by the SHA-256 of the whole token: a media
/// server asks about the same token on every segment request of a play, and the ES256
/// verification was most of the call-back's cost. Times and revocation are checked on every
/// hit; only the signature's verdict on these exact bytes is remembered.
pub struct VerifiedStreamTokens {
    cache: quick_cache::sync::Cache<[u8; 32], std::sync::Arc<StreamClaims>>,
}

impl Default for VerifiedStreamTokens {
    fn default() -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(VERIFIED_CAPACITY),
        }
    }
}

/// The `iss` a token claims, unverified: only to choose the issuer to verify it against.
pub fn unverified_issuer(token: &str) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let payload = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    let claims: Value = serde_json::from_slice(&payload).ok()?;
    claims["iss"].as_str().map(str::to_owned)
}

/// The claims of a stream token signed by one of `keys` and issued by us, at any time.
fn genuine(keys: &Loaded, token: &str, issuer: &str) -> Result<StreamClaims, Denial> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| Denial::Invalid)?;
    if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(TYP) {
        return Err(Denial::Invalid);
    }
    let kid = header.kid.ok_or(Denial::Invalid)?;
    let key = keys.decoding_key(&kid).ok_or(Denial::Invalid)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["iss", "sub", "nbf"]);
    // `now` decides (tested without sleeping), not the library's clock; there is no audience.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    jsonwebtoken::decode::<StreamClaims>(token, key, &validation)
        .map(|data| data.claims)
        .map_err(|_| Denial::Invalid)
}

/// Who may create and revoke stream tokens: an admin or owner of the tenant, presenting an API
/// token, or an access token with the token-management scope.
pub fn may_manage_stream_tokens(principal: &Principal) -> Result<(), StreamError> {
    if let Credential::AccessToken { scopes } = &principal.credential {
        if !scopes.iter().any(|s| s == MANAGE_SCOPE) {
            return Err(StreamError::InsufficientScope(format!(
                "stream tokens need an access token with the {MANAGE_SCOPE} scope"
            )));
        }
    }
    if !principal.is_admin_or_owner() {
        return Err(StreamError::Forbidden(format!(
            "only an admin or owner of tenant {} may manage its stream tokens",
            principal.tenant
        )));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    Params(#[from] ParamError),
    #[error("{0}")]
    Forbidden(String),
    /// The credential is valid but lacks [`MANAGE_SCOPE`].
    #[error("{0}")]
    InsufficientScope(String),
    #[error(transparent)]
    Internal(#[from] Error),
}

impl TokenService {
    /// Signs a stream token for the principal's tenant and records it for revocation.
    pub async fn issue_stream_token(
        &self,
        conn: &mut Conn,
        principal: &Principal,
        new: NewStreamToken,
        now: i64,
    ) -> Result<String, StreamError> {
        may_manage_stream_tokens(principal)?;
        let keys = self.keys.for_signing(conn, now).await?;
        let claims = StreamClaims {
            iss: self.issuer.clone(),
            sub: new.stream,
            tenant: principal.tenant.to_string(),
            iat: now,
            nbf: now,
            exp: (new.ttl != 0).then_some(now + new.ttl),
            jti: secrets::random_id(),
            perm: new.perm,
            window: new.window,
        };
        let token = keys.signing.jwt(TYP, &claims)?;
        db::stream_tokens::insert(
            conn,
            &StreamTokenRow {
                jti: claims.jti,
                tenant_id: claims.tenant,
                stream: claims.sub,
                kid: keys.signing.kid().to_owned(),
                issued_by: principal.subject(),
                issued_at: now,
                expires_at: claims.exp,
                revoked_at: None,
            },
        )
        .await?;
        Ok(token)
    }

    /// Revokes one of the principal's tenant's stream tokens. Revoking one twice is not an
    /// error; one the tenant did not issue is.
    pub async fn revoke_stream_token(
        &self,
        conn: &mut Conn,
        principal: &Principal,
        target: RevokeTarget,
        now: i64,
    ) -> Result<(), StreamError> {
        may_manage_stream_tokens(principal)?;
        let jti = match target {
            RevokeTarget::Jti(jti) => jti,
            RevokeTarget::Token(token) => {
                let claims = self
                    .stream_claims(conn, &token, now)
                    .await?
                    .ok_or_else(|| invalid("token is not a stream token issued here"))?;
                if claims.tenant != principal.tenant.as_str() {
                    return Err(StreamError::Forbidden(format!(
                        "the token belongs to another tenant than {}",
                        principal.tenant
                    )));
                }
                claims.jti.clone()
            }
        };
        if !db::stream_tokens::revoke(conn, &principal.tenant, &jti, now).await? {
            return Err(invalid(format!(
                "jti: tenant {} issued no stream token {jti:?}",
                principal.tenant
            ))
            .into());
        }
        Ok(())
    }

    /// The claims of a token we signed, whatever its times (so that an expired or not yet
    /// valid token can still be named for revocation).
    async fn stream_claims(
        &self,
        conn: &mut Conn,
        token: &str,
        now: i64,
    ) -> Result<Option<Arc<StreamClaims>>, Error> {
        Ok(self.genuine_stream_token(conn, token, now).await?.ok())
    }

    /// [`genuine`] against the ring (reloaded when another instance introduced a key),
    /// answered from the cache when these exact bytes verified before.
    async fn genuine_stream_token(
        &self,
        conn: &mut Conn,
        token: &str,
        now: i64,
    ) -> Result<Result<Arc<StreamClaims>, Denial>, Error> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.verified_streams.cache.get(&digest) {
            return Ok(Ok(claims));
        }
        let Some(kid) = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid) else {
            return Ok(Err(Denial::Invalid));
        };
        let keys = self.keys.for_verifying(conn, &kid, now).await?;
        Ok(genuine(&keys, token, &self.issuer).map(|claims| {
            let claims = Arc::new(claims);
            self.verified_streams.cache.insert(digest, claims.clone());
            claims
        }))
    }

    /// A stream token as a media server checks it on every play: signature, times and
    /// revocation, then what is asked.
    pub async fn check_stream_token(
        &self,
        conn: &mut Conn,
        token: &str,
        stream: Option<&str>,
        asked: Option<Asked>,
        now: i64,
    ) -> Result<Result<Arc<StreamClaims>, Denial>, Error> {
        if token.is_empty() {
            return Ok(Err(Denial::Missing));
        }
        let claims = match self.genuine_stream_token(conn, token, now).await? {
            Ok(claims) => claims,
            Err(denial) => return Ok(Err(denial)),
        };
        if let Err(denial) = claims
            .in_time(now)
            .and_then(|()| claims.allows(stream, asked))
        {
            return Ok(Err(denial));
        }
        if db::stream_tokens::is_revoked(conn, &claims.tenant, &claims.jti).await? {
            return Ok(Err(Denial::Revoked));
        }
        Ok(Ok(claims))
    }
}

/// The revocation list of a tenant: ids of revoked tokens that have not expired.
pub async fn revoked(conn: &mut Conn, tenant: &TenantId, now: i64) -> Result<Vec<String>, Error> {
    crate::tenants::get(conn, tenant).await?;
    db::stream_tokens::revoked_ids(conn, tenant, now).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(params: Value) -> Result<NewStreamToken, ParamError> {
        NewStreamToken::from_params(Some(&params), "Auth.CreateApiToken", None)
    }

    fn refused(params: Value, naming: &str) {
        match parse(params.clone()) {
            Err(ParamError(message)) => assert!(
                message.contains(naming),
                "{params}: {message:?} should name {naming}"
            ),
            Ok(token) => panic!("{params} was accepted: {token:?}"),
        }
    }

    #[test]
    fn params_default_as_flussonic() {
        let token = parse(json!({"stream": "cam1", "live": true})).expect("valid");
        assert_eq!(
            token,
            NewStreamToken {
                stream: "cam1".into(),
                ttl: 3600,
                perm: Perm {
                    live: true,
                    dvr: false,
                    copy: false
                },
                window: None,
            }
        );
        let token = parse(json!({"stream": "cam1", "dvr": true, "ttl": 0, "from": 0, "to": 20}))
            .expect("valid");
        assert_eq!(token.ttl, 0);
        assert_eq!(token.window, Some(Window { from: 0, to: 20 }));
        // Both bounds 0 is no window at all.
        let token = parse(json!({"stream": "a", "copy": true, "from": 0, "to": 0})).expect("valid");
        assert_eq!(token.window, None);
        // from == to is a window of one second.
        let token =
            parse(json!({"stream": "a", "copy": true, "from": 10, "to": 10})).expect("valid");
        assert_eq!(token.window, Some(Window { from: 10, to: 10 }));
    }

    #[test]
    fn every_rule_names_its_param() {
        refused(json!({"live": true}), "stream is required");
        refused(json!({"stream": "", "live": true}), "stream");
        refused(json!({"stream": "x".repeat(256), "live": true}), "stream");
        refused(json!({"stream": "a\nb", "live": true}), "stream");
        refused(
            json!({"stream": 5, "live": true}),
            "stream must be a string",
        );
        refused(json!({"stream": "a", "live": true, "ttl": -1}), "ttl");
        refused(json!({"stream": "a", "live": true, "ttl": 1.5}), "ttl");
        refused(json!({"stream": "a", "live": true, "ttl": "60"}), "ttl");
        refused(json!({"stream": "a", "live": true, "ttl": u64::MAX}), "ttl");
        refused(json!({"stream": "a", "live": "yes"}), "live");
        refused(json!({"stream": "a"}), "live, dvr and copy");
        refused(json!({"stream": "a", "live": false}), "live, dvr and copy");
        refused(
            json!({"stream": "a", "live": true, "from": 5}),
            "need dvr or copy",
        );
        refused(
            json!({"stream": "a", "live": true, "to": 5}),
            "need dvr or copy",
        );
        refused(
            json!({"stream": "a", "dvr": true, "from": 9, "to": 5}),
            "to must not be before from",
        );
        refused(json!({"stream": "a", "dvr": true, "from": -1}), "from");
        refused(json!({"stream": "a", "dvr": true, "to": "5"}), "to");
        refused(
            json!({"stream": "a", "live": true, "dvr_from": 5}),
            "dvr_from",
        );
        assert!(
            NewStreamToken::from_params(Some(&json!(["a"])), "Auth.CreateApiToken", None).is_err()
        );
        assert!(NewStreamToken::from_params(None, "Auth.CreateApiToken", None).is_err());
    }

    #[test]
    fn the_operator_caps_ttl() {
        let capped = |ttl: i64| {
            NewStreamToken::from_params(
                Some(&json!({"stream": "a", "live": true, "ttl": ttl})),
                "Auth.CreateApiToken",
                Some(600),
            )
        };
        assert_eq!(capped(600).map(|t| t.ttl), Ok(600));
        assert!(capped(601).is_err_and(|e| e.0.contains("at most 600")));
        assert!(capped(0).is_err_and(|e| e.0.contains("ttl 0")));
    }

    #[test]
    fn revocation_names_one_token() {
        let target = |p: Value| RevokeTarget::from_params(Some(&p), "Auth.RevokeToken");
        assert_eq!(
            target(json!({"jti": "abc"})),
            Ok(RevokeTarget::Jti("abc".into()))
        );
        assert_eq!(
            target(json!({"token": "a.b.c"})),
            Ok(RevokeTarget::Token("a.b.c".into()))
        );
        assert!(target(json!({})).is_err());
        assert!(target(json!({"jti": "a", "token": "b"})).is_err());
        assert!(target(json!({"jti": ""})).is_err());
        assert!(target(json!({"jti": "a", "why": 1})).is_err());
    }

    fn claims(perm: Perm, window: Option<Window>) -> StreamClaims {
        StreamClaims {
            iss: "https://kf".into(),
            sub: "cam1".into(),
            tenant: "acme".into(),
            iat: 100,
            nbf: 100,
            exp: Some(200),
            jti: "j".into(),
            perm,
            window,
        }
    }

    #[test]
    fn permissions_and_window_edges() {
        let dvr = claims(
            Perm {
                live: false,
                dvr: true,
                copy: false,
            },
            Some(Window { from: 10, to: 20 }),
        );
        let ask = |action, archive| Some(Asked { action, archive });
        assert_eq!(
            dvr.allows(Some("cam1"), ask(Action::Dvr, Some((10, 20)))),
            Ok(())
        );
        assert_eq!(
            dvr.allows(Some("cam1"), ask(Action::Dvr, Some((15, 15)))),
            Ok(())
        );
        assert_eq!(
            dvr.allows(Some("cam1"), ask(Action::Dvr, Some((9, 15)))),
            Err(Denial::OutsideWindow)
        );
        assert_eq!(
            dvr.allows(Some("cam1"), ask(Action::Dvr, Some((15, 21)))),
            Err(Denial::OutsideWindow)
        );
        assert_eq!(
            dvr.allows(Some("cam1"), ask(Action::Live, None)),
            Err(Denial::NotPermitted(Action::Live))
        );
        assert_eq!(
            dvr.allows(Some("cam1"), ask(Action::Copy, Some((10, 11)))),
            Err(Denial::NotPermitted(Action::Copy))
        );
        assert_eq!(
            dvr.allows(Some("cam2"), ask(Action::Dvr, Some((10, 11)))),
            Err(Denial::WrongStream)
        );
        // An archive request without a time: the window goes to the media server instead.
        assert_eq!(dvr.allows(Some("cam1"), ask(Action::Dvr, None)), Ok(()));
        let open_start = claims(dvr.perm, Some(Window { from: 0, to: 20 }));
        assert_eq!(
            open_start.allows(None, ask(Action::Dvr, Some((0, 20)))),
            Ok(())
        );
        assert_eq!(
            open_start.allows(None, ask(Action::Dvr, Some((0, 21)))),
            Err(Denial::OutsideWindow)
        );
        let open_end = claims(dvr.perm, Some(Window { from: 10, to: 0 }));
        assert_eq!(
            open_end.allows(None, ask(Action::Dvr, Some((10, i64::MAX / 2)))),
            Ok(())
        );
    }
}
