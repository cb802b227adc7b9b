//! The token service: the grants, introspection and revocation, without HTTP. The OAuth
//! handlers and the VideoManager-compatible API are thin doors onto these functions.

pub mod access;
pub mod api;
pub mod error;
pub mod scope;

use serde::Serialize;
use serde_json::{json, Value};

use crate::clients::{Client, GrantType};
use crate::config::TokenSettings;
use crate::db::sessions::CodeRow;
use crate::db::tokens::{Family, Purged, RefreshToken};
use crate::db::{self, write_transaction, DbConnection};
use crate::error::Error;
use crate::keys::KeyRing;
use crate::secrets::{self, PlainSecret};
use crate::tenants::TenantId;
use crate::tokens::error::OAuthError;
use crate::users::{self, User, Username};
use access::AccessClaims;

pub const REFRESH_TOKEN_PREFIX: &str = "kf_rt_";
const CODE_PREFIX: &str = "kf_ac_";

/// What a grant asks for, already parsed from the request.
#[derive(Debug)]
pub enum GrantRequest {
    Password {
        username: String,
        password: String,
        scope: Option<String>,
        tenant: Option<String>,
        /// The address the attempt came from, for the lockout.
        source: String,
    },
    Refresh {
        refresh_token: String,
        scope: Option<String>,
        tenant: Option<String>,
    },
    AuthorizationCode {
        code: String,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
    },
    TokenExchange {
        subject_token: String,
        subject_token_type: String,
        requested_token_type: Option<String>,
        scope: Option<String>,
        audience: Option<String>,
        resource: Option<String>,
        actor_token: Option<String>,
    },
}

/// Seconds until a sign-in from `source` is allowed again, or `None` when it is allowed now.
/// `failures` are the username's failures inside the window, oldest first. A lock lifts when
/// enough of the oldest failures have left the window to bring the count under its limit:
/// `threshold` for this source, `lockout_user_ceiling` for all sources together.
fn locked_for(
    failures: &[(String, i64)],
    source: &str,
    settings: &TokenSettings,
    now: i64,
) -> Option<i64> {
    let lifts_at = |times: &[i64], limit: i64| -> Option<i64> {
        let limit = usize::try_from(limit).ok()?.max(1);
        (times.len() >= limit).then(|| times[times.len() - limit] + settings.lockout_window)
    };
    let all: Vec<i64> = failures.iter().map(|(_, at)| *at).collect();
    let mine: Vec<i64> = failures
        .iter()
        .filter(|(s, _)| s == source)
        .map(|(_, at)| *at)
        .collect();
    let until = lifts_at(&mine, settings.lockout_threshold)
        .into_iter()
        .chain(lifts_at(&all, settings.lockout_user_ceiling))
        .max()?;
    Some((until - now).max(1))
}

/// RFC 8693 §3: the one token type Keyframe takes and issues in an exchange.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `sid` of a JWT exchanged for an API token: `apitoken:<id>:<generation>`, so that deleting
/// or renewing the API token ends the JWTs it was traded for.
const EXCHANGED_SID_PREFIX: &str = "apitoken:";

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TenantRef {
    pub id: TenantId,
    pub name: String,
}

/// The RFC 6749 §5.1 response, plus the tenant the pair is scoped to and the ones the user may
/// switch to.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// RFC 8693 responses name what they issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    pub tenant: TenantId,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<TenantRef>,
}

pub struct TokenService {
    pub issuer: String,
    pub audience: String,
    pub settings: TokenSettings,
    pub keys: KeyRing,
    verified: access::VerifiedTokens,
}

fn invalid_refresh() -> OAuthError {
    OAuthError::InvalidGrant("the refresh token is invalid, expired or revoked".into())
}

impl TokenService {
    /// Loads (creating on first start) the signing keys.
    pub fn new(
        conn: &mut DbConnection,
        issuer: String,
        settings: TokenSettings,
        now: i64,
    ) -> Result<Self, Error> {
        let keys = KeyRing::load(conn, now, settings.access_token_ttl)?;
        let audience = settings.audience.clone().unwrap_or_else(|| issuer.clone());
        Ok(Self {
            issuer,
            audience,
            settings,
            keys,
            verified: access::VerifiedTokens::default(),
        })
    }

    pub fn grant(
        &self,
        conn: &mut DbConnection,
        client: &Client,
        request: GrantRequest,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        match request {
            GrantRequest::Password {
                username,
                password,
                scope,
                tenant,
                source,
            } => self.password_grant(
                conn,
                client,
                &username,
                &password,
                &source,
                scope.as_deref(),
                tenant.as_deref(),
                now,
            ),
            GrantRequest::Refresh {
                refresh_token,
                scope,
                tenant,
            } => self.refresh_grant(
                conn,
                client,
                &refresh_token,
                scope.as_deref(),
                tenant.as_deref(),
                now,
            ),
            GrantRequest::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => self.code_grant(
                conn,
                client,
                &code,
                redirect_uri.as_deref(),
                code_verifier.as_deref(),
                now,
            ),
            GrantRequest::TokenExchange {
                subject_token,
                subject_token_type,
                requested_token_type,
                scope,
                audience,
                resource,
                actor_token,
            } => {
                if actor_token.is_some() {
                    // RFC 8693 §2.1: delegation needs an actor; Keyframe only impersonates.
                    return Err(OAuthError::InvalidRequest(
                        "actor_token is not supported: Keyframe exchanges without delegation"
                            .into(),
                    ));
                }
                for (name, target) in [("audience", &audience), ("resource", &resource)] {
                    if target.as_ref().is_some_and(|t| t != &self.audience) {
                        return Err(OAuthError::InvalidTarget(format!(
                            "{name} must be omitted or {}: Keyframe issues tokens for no other",
                            self.audience
                        )));
                    }
                }
                self.exchange_grant(
                    conn,
                    client,
                    &subject_token,
                    &subject_token_type,
                    requested_token_type.as_deref(),
                    scope.as_deref(),
                    now,
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn password_grant(
        &self,
        conn: &mut DbConnection,
        client: &Client,
        username: &str,
        password: &str,
        source: &str,
        scope: Option<&str>,
        tenant: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows(GrantType::Password) {
            return Err(OAuthError::UnauthorizedClient(
                "this client is not allowed the password grant".into(),
            ));
        }
        let scopes = scope::resolve(scope, &client.scopes)?;
        let requested_tenant = tenant.map(parse_tenant).transpose()?;
        let user = self.sign_in(conn, username, password, source, now)?;
        let tenant = choose_tenant(&user, requested_tenant)?;

        let (family, refresh) = self.new_grant(client, &user, scope::join(&scopes), now);
        write_transaction(conn, |conn| {
            db::tokens::insert_family(conn, &family)?;
            if let Some(refresh) = &refresh {
                db::tokens::insert_refresh(
                    conn,
                    &self.refresh_row(refresh, &family, &tenant, &family.scope, now),
                )?;
            }
            Ok::<_, Error>(())
        })?;
        self.respond(
            conn, client, &user, &family.id, tenant, scopes, refresh, now,
        )
    }

    /// Checks a username and password, with the lockout: the password grant and the login
    /// page give the same answers, in about the same time for unknown users. `source` is the
    /// address the attempt came from (see `proxy`).
    pub fn sign_in(
        &self,
        conn: &mut DbConnection,
        username: &str,
        password: &str,
        source: &str,
        now: i64,
    ) -> Result<User, OAuthError> {
        // The lockout counts attempts per username whether or not it exists, so that it does
        // not reveal which ones do.
        let key = Username::parse(username)
            .map(|u| u.as_str().to_owned())
            .unwrap_or_else(|_| username.to_lowercase());
        let failures = db::tokens::recent_failures(conn, &key, now - self.settings.lockout_window)?;
        if let Some(retry_after) = locked_for(&failures, source, &self.settings, now) {
            return Err(OAuthError::Locked { retry_after });
        }
        let Some(user) = users::check_password(conn, username, password)? else {
            db::tokens::record_failure(conn, &secrets::random_id(), &key, source, now)?;
            return Err(OAuthError::InvalidGrant(
                "invalid username or password".into(),
            ));
        };
        // A success clears its source's count (most sign-ins have nothing to clear, so skip
        // the write); the other sources' failures still count towards the ceiling.
        if failures.iter().any(|(s, _)| s == source) {
            db::tokens::clear_failures(conn, &key, source)?;
        }
        Ok(user)
    }

    /// Issues a single-use authorization code (RFC 6749 §4.1.2: short-lived; 60 s by default), bound
    /// to the client, redirect URI, PKCE challenge, scope, tenant and user.
    pub fn issue_code(
        &self,
        conn: &mut DbConnection,
        request: &crate::authorization::AuthorizationRequest,
        user: &User,
        tenant: &TenantId,
        now: i64,
    ) -> Result<PlainSecret, Error> {
        let code = PlainSecret::generate(CODE_PREFIX);
        db::sessions::insert_code(
            conn,
            &CodeRow {
                digest: code.digest(),
                client_id: request.client.client_id.clone(),
                user_id: user.id.clone(),
                tenant_id: tenant.as_str().to_owned(),
                redirect_uri: request.redirect_uri.clone(),
                redirect_uri_given: request.redirect_uri_given,
                scope: scope::join(&request.scopes),
                code_challenge: request.code_challenge.clone(),
                created_at: now,
                expires_at: now + self.settings.authorization_code_ttl,
                used_at: None,
                family_id: None,
            },
        )?;
        Ok(code)
    }

    /// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6). A second use fails and revokes what the
    /// first one produced (RFC 6749 §4.1.2).
    fn code_grant(
        &self,
        conn: &mut DbConnection,
        client: &Client,
        code: &str,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(OAuthError::UnauthorizedClient(
                "this client is not allowed the authorization_code grant".into(),
            ));
        }
        let invalid = || {
            OAuthError::InvalidGrant(
                "the authorization code is invalid, expired or already used".into(),
            )
        };
        let digest = secrets::digest(code);
        let Some(row) = db::sessions::find_code(conn, &digest)? else {
            return Err(invalid());
        };
        if row.client_id != client.client_id {
            return Err(invalid());
        }
        if row.used_at.is_some() {
            return Err(self.code_reused(conn, &row, now));
        }
        if row.expires_at <= now {
            return Err(invalid());
        }
        let redirect_ok = match redirect_uri {
            Some(given) => given == row.redirect_uri,
            None => !row.redirect_uri_given,
        };
        if !redirect_ok {
            return Err(OAuthError::InvalidGrant(
                "redirect_uri does not match the authorization request".into(),
            ));
        }
        match (&row.code_challenge, verifier) {
            (Some(challenge), Some(verifier))
                if crate::authorization::pkce_matches(verifier, challenge) => {}
            (Some(_), Some(_)) => {
                return Err(OAuthError::InvalidGrant(
                    "the code_verifier does not match the code_challenge".into(),
                ))
            }
            (Some(_), None) => {
                return Err(OAuthError::InvalidGrant("code_verifier is missing".into()))
            }
            // A verifier for a code issued without a challenge is a downgrade attempt (RFC 9700 §2.1.1).
            (None, Some(_)) => {
                return Err(OAuthError::InvalidGrant(
                    "this code was issued without a code_challenge".into(),
                ))
            }
            (None, None) => {}
        }
        let user = db::users::find_by_id(conn, &row.user_id)?
            .filter(|u| !u.disabled)
            .ok_or_else(invalid)?;
        let tenant = TenantId::from_db(row.tenant_id.clone());
        if !user.tenants.iter().any(|m| m.id == tenant) {
            return Err(OAuthError::InvalidGrant(format!(
                "the user is no longer a member of tenant {tenant}"
            )));
        }
        let (family, refresh) = self.new_grant(client, &user, row.scope.clone(), now);
        let consumed = write_transaction(conn, |conn| {
            // The family first: the code row points at it.
            db::tokens::insert_family(conn, &family)?;
            if !db::sessions::consume_code(conn, &digest, &family.id, now)? {
                return Err(Error::Conflict("already used".into()));
            }
            if let Some(refresh) = &refresh {
                db::tokens::insert_refresh(
                    conn,
                    &self.refresh_row(refresh, &family, &tenant, &family.scope, now),
                )?;
            }
            Ok(())
        });
        match consumed {
            Ok(()) => {}
            Err(Error::Conflict(_)) => {
                let row = db::sessions::find_code(conn, &digest)?.ok_or_else(invalid)?;
                return Err(self.code_reused(conn, &row, now));
            }
            Err(e) => return Err(e.into()),
        }
        self.respond(
            conn,
            client,
            &user,
            &family.id,
            tenant,
            scope::split(&row.scope),
            refresh,
            now,
        )
    }

    fn code_reused(&self, conn: &mut DbConnection, row: &CodeRow, now: i64) -> OAuthError {
        if let Some(family) = &row.family_id {
            if let Err(error) = db::tokens::revoke_family(conn, family, now) {
                return error.into();
            }
            tracing::warn!(family = %family, client_id = %row.client_id, "authorization code reuse: tokens revoked");
        }
        OAuthError::InvalidGrant(
            "the authorization code was already used; the tokens it produced are revoked".into(),
        )
    }

    fn refresh_grant(
        &self,
        conn: &mut DbConnection,
        client: &Client,
        presented: &str,
        scope: Option<&str>,
        tenant: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows(GrantType::RefreshToken) {
            return Err(OAuthError::UnauthorizedClient(
                "this client is not allowed the refresh_token grant".into(),
            ));
        }
        if !presented.starts_with(REFRESH_TOKEN_PREFIX) {
            return Err(invalid_refresh());
        }
        let digest = secrets::digest(presented);
        let Some((token, family, user)) = db::tokens::find_refresh_with_user(conn, &digest)? else {
            return Err(invalid_refresh());
        };
        // RFC 6749 §6: bound to its client. Another client learns nothing and changes nothing.
        if family.client_id != client.client_id {
            return Err(invalid_refresh());
        }
        if family.revoked_at.is_some() {
            return Err(invalid_refresh());
        }
        if let Some(used_at) = token.used_at {
            return Err(self.reused(conn, &family, used_at, now));
        }
        if family.expires_at <= now || token.idle_expires_at <= now {
            return Err(invalid_refresh());
        }
        if user.disabled {
            return Err(invalid_refresh());
        }
        let current = TenantId::from_db(token.tenant_id.clone());
        if !user.tenants.iter().any(|m| m.id == current) {
            return Err(OAuthError::InvalidGrant(format!(
                "the user is no longer a member of tenant {current}"
            )));
        }
        // RFC 6749 §6: never more than the grant originally had; omitted means all of it.
        let scopes = scope::resolve(scope, &scope::split(&family.scope))?;
        let tenant = match tenant {
            Some(requested) => choose_tenant(&user, Some(parse_tenant(requested)?))?,
            None => current,
        };

        // Everything above only read: a refused refresh leaves the token usable.
        let next = PlainSecret::generate(REFRESH_TOKEN_PREFIX);
        let next_row = self.refresh_row(&next, &family, &tenant, &scope::join(&scopes), now);
        let consumed = db::tokens::rotate_refresh(conn, &digest, now, &next_row)?;
        if !consumed {
            // Someone consumed it between our read and our write: a concurrent reuse.
            let used_at = db::tokens::used_at(conn, &digest)?.unwrap_or(now);
            return Err(self.reused(conn, &family, used_at, now));
        }
        self.respond(
            conn,
            client,
            &user,
            &family.id,
            tenant,
            scopes,
            Some(next),
            now,
        )
    }

    /// A rotated refresh token came back. Within the grace period (opt-in, for clients that
    /// race by design) it is only refused; otherwise it is treated as stolen and the whole
    /// family is revoked (RFC 9700 §4.14.2).
    fn reused(
        &self,
        conn: &mut DbConnection,
        family: &Family,
        used_at: i64,
        now: i64,
    ) -> OAuthError {
        let grace = self.settings.refresh_reuse_grace;
        if grace > 0 && now - used_at <= grace {
            return OAuthError::InvalidGrant(
                "the refresh token was just rotated: use the new one".into(),
            );
        }
        if let Err(error) = db::tokens::revoke_family(conn, &family.id, now) {
            return error.into();
        }
        tracing::warn!(family = %family.id, client_id = %family.client_id, "refresh token reuse: family revoked");
        OAuthError::InvalidGrant(
            "the refresh token was already used; every token of this grant is now revoked".into(),
        )
    }

    /// A new family (one sign-in) and, if the client may refresh, its first refresh token.
    fn new_grant(
        &self,
        client: &Client,
        user: &User,
        scope: String,
        now: i64,
    ) -> (Family, Option<PlainSecret>) {
        let family = Family {
            id: secrets::random_id(),
            client_id: client.client_id.clone(),
            user_id: user.id.clone(),
            scope,
            created_at: now,
            expires_at: now + self.settings.refresh_token_ttl,
            revoked_at: None,
        };
        let refresh = client
            .allows(GrantType::RefreshToken)
            .then(|| PlainSecret::generate(REFRESH_TOKEN_PREFIX));
        (family, refresh)
    }

    fn refresh_row(
        &self,
        token: &PlainSecret,
        family: &Family,
        tenant: &TenantId,
        scope: &str,
        now: i64,
    ) -> RefreshToken {
        RefreshToken {
            digest: token.digest(),
            family_id: family.id.clone(),
            tenant_id: tenant.as_str().to_owned(),
            scope: scope.to_owned(),
            created_at: now,
            idle_expires_at: (now + self.settings.refresh_token_idle_ttl).min(family.expires_at),
            used_at: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn respond(
        &self,
        conn: &mut DbConnection,
        client: &Client,
        user: &User,
        family_id: &str,
        tenant: TenantId,
        scopes: Vec<String>,
        refresh: Option<PlainSecret>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let scope = scope::join(&scopes);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: user.id.clone(),
            aud: self.audience.clone(),
            exp: now + self.settings.access_token_ttl,
            iat: now,
            jti: secrets::random_id(),
            client_id: client.client_id.clone(),
            scope: scope.clone(),
            tenant: tenant.as_str().to_owned(),
            sid: family_id.to_owned(),
        };
        let keys = self.keys.for_signing(conn, now)?;
        let access_token = access::encode(&keys.signing, &claims)?;
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.settings.access_token_ttl,
            refresh_token: refresh.map(|r| r.expose().to_owned()),
            scope,
            tenant,
            tenants: user
                .tenants
                .iter()
                .map(|m| TenantRef {
                    id: m.id.clone(),
                    name: m.name.clone(),
                })
                .collect(),
            issued_token_type: None,
        })
    }

    /// RFC 7662. Access tokens: any confidential client may ask. Refresh tokens: only their
    /// own client. Everything that is not active is exactly `{"active": false}`.
    pub fn introspect(
        &self,
        conn: &mut DbConnection,
        client: &Client,
        token: &str,
        now: i64,
    ) -> Result<Value, OAuthError> {
        let inactive = json!({ "active": false });
        if token.starts_with(REFRESH_TOKEN_PREFIX) {
            let Some((row, family, user)) =
                db::tokens::find_refresh_with_user(conn, &secrets::digest(token))?
            else {
                return Ok(inactive);
            };
            let live = family.client_id == client.client_id
                && family.revoked_at.is_none()
                && row.used_at.is_none()
                && family.expires_at > now
                && row.idle_expires_at > now
                && !user.disabled
                && user.tenants.iter().any(|m| m.id.as_str() == row.tenant_id);
            if !live {
                return Ok(inactive);
            }
            return Ok(json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": row.scope,
                "client_id": family.client_id,
                "sub": user.id,
                "username": user.username,
                "tenant": row.tenant_id,
                "exp": row.idle_expires_at.min(family.expires_at),
                "iat": row.created_at,
                "iss": self.issuer,
                "aud": self.audience,
            }));
        }
        if api::well_formed(token).is_some() {
            let Some(principal) = api::authenticate(conn, token, now)? else {
                return Ok(inactive);
            };
            let kind = principal
                .api_token()
                .map_or(api::Kind::System, |(_, kind)| kind);
            let mut answer = json!({
                "active": true,
                "token_type": kind.token_type(),
                "scope": principal.scope(),
                "sub": principal.subject(),
                "tenant": principal.tenant,
                "iss": self.issuer,
            });
            if let Some(username) = &principal.username {
                answer["username"] = json!(username);
            }
            if let Some(created) = principal.created_at {
                answer["iat"] = json!(created);
            }
            if let Some(expires) = principal.expires_at {
                answer["exp"] = json!(expires);
            }
            return Ok(answer);
        }
        let Some((claims, username)) = self.verify_access_token(conn, token, now)? else {
            return Ok(inactive);
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
        Ok(answer)
    }

    /// An access token that is genuine, unexpired and still backed by everything it depends on
    /// (family, user, membership, not revoked), with the user's name.
    pub fn verify_access_token(
        &self,
        conn: &mut DbConnection,
        token: &str,
        now: i64,
    ) -> Result<Option<(AccessClaims, Option<String>)>, Error> {
        let Some(claims) =
            self.verified
                .verify(&self.keys, conn, token, &self.issuer, &self.audience, now)?
        else {
            return Ok(None);
        };
        if claims.sid.starts_with(EXCHANGED_SID_PREFIX) {
            let principal = self.exchanged_principal(conn, &claims, now)?;
            return Ok(principal.map(|p| (claims, p.username)));
        }
        let username = db::tokens::access_token_username(
            conn,
            &claims.sid,
            &claims.jti,
            &claims.sub,
            &claims.tenant,
        )?;
        Ok(username.map(|name| (claims, Some(name))))
    }

    /// The API token behind an exchanged JWT, while it (this generation of it) still holds.
    fn exchanged_principal(
        &self,
        conn: &mut DbConnection,
        claims: &AccessClaims,
        now: i64,
    ) -> Result<Option<api::Principal>, Error> {
        let Some((id, generation)) = claims
            .sid
            .strip_prefix(EXCHANGED_SID_PREFIX)
            .and_then(|r| r.split_once(':'))
        else {
            return Ok(None);
        };
        if db::tokens::is_revoked(conn, &claims.jti)? {
            return Ok(None);
        }
        let Some(row) = db::api_tokens::by_id(conn, id)? else {
            return Ok(None);
        };
        if !row.digest.starts_with(generation) {
            return Ok(None);
        }
        let Some(mut principal) =
            api::principal_of(conn, &row, now)?.filter(|p| p.tenant.as_str() == claims.tenant)
        else {
            return Ok(None);
        };
        // An exchange may have narrowed the roles (RFC 8693 `scope`): the JWT acts with no
        // role its scope does not name.
        let granted = scope::split(&claims.scope);
        principal
            .roles
            .retain(|r| granted.iter().any(|g| g == r.as_str()));
        Ok(Some(principal))
    }

    /// Who a bearer token on Keyframe's own APIs speaks for: an API token, or an access token
    /// (the user with their current role in the token's tenant).
    pub fn principal(
        &self,
        conn: &mut DbConnection,
        bearer: &str,
        now: i64,
    ) -> Result<Option<api::Principal>, Error> {
        if api::well_formed(bearer).is_some() {
            return api::authenticate(conn, bearer, now);
        }
        let Some((claims, _)) = self.verify_access_token(conn, bearer, now)? else {
            return Ok(None);
        };
        if claims.sid.starts_with(EXCHANGED_SID_PREFIX) {
            return self.exchanged_principal(conn, &claims, now);
        }
        let Some(user) = db::users::find_by_id(conn, &claims.sub)? else {
            return Ok(None);
        };
        let tenant = TenantId::from_db(claims.tenant.clone());
        let Some(membership) = user.tenants.iter().find(|m| m.id == tenant) else {
            return Ok(None);
        };
        Ok(Some(api::Principal {
            roles: vec![membership.role],
            tenant,
            user_id: Some(user.id.clone()),
            username: Some(user.username.to_string()),
            credential: api::Credential::AccessToken {
                scopes: scope::split(&claims.scope),
            },
            expires_at: Some(claims.exp),
            created_at: Some(claims.iat),
        }))
    }

    /// RFC 8693: an API token traded for a short-lived JWT that resource servers verify
    /// offline. The JWT carries the token's tenant, its roles as scope, and as `sub` the owning
    /// user or `tenant:<id>` for a system token.
    #[allow(clippy::too_many_arguments)]
    fn exchange_grant(
        &self,
        conn: &mut DbConnection,
        client: &Client,
        subject_token: &str,
        subject_token_type: &str,
        requested_token_type: Option<&str>,
        scope: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        if !client.allows(GrantType::TokenExchange) {
            return Err(OAuthError::UnauthorizedClient(
                "this client is not allowed the token-exchange grant".into(),
            ));
        }
        if subject_token_type != ACCESS_TOKEN_TYPE {
            return Err(OAuthError::InvalidRequest(format!(
                "subject_token_type must be {ACCESS_TOKEN_TYPE}"
            )));
        }
        if requested_token_type.is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
            return Err(OAuthError::InvalidRequest(format!(
                "only {ACCESS_TOKEN_TYPE} can be requested"
            )));
        }
        // RFC 8693 §2.2.2: an unusable subject token is invalid_request.
        let unusable = || {
            OAuthError::InvalidRequest("the subject_token is not a valid Keyframe API token".into())
        };
        let principal = api::authenticate(conn, subject_token, now)?.ok_or_else(unusable)?;
        let (id, _) = principal.api_token().ok_or_else(unusable)?;
        let id = id.to_owned();
        // RFC 8693 §2.1: at most what the subject token carries (its roles).
        let scopes = scope::resolve(scope, &scope::split(&principal.scope()))?;
        let row = db::api_tokens::by_id(conn, &id)?.ok_or_else(unusable)?;
        let exp = principal
            .expires_at
            .map_or(now + self.settings.access_token_ttl, |t| {
                t.min(now + self.settings.access_token_ttl)
            });
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: principal.subject(),
            aud: self.audience.clone(),
            exp,
            iat: now,
            jti: secrets::random_id(),
            client_id: client.client_id.clone(),
            scope: scope::join(&scopes),
            tenant: principal.tenant.as_str().to_owned(),
            sid: format!("{EXCHANGED_SID_PREFIX}{id}:{}", &row.digest[..12]),
        };
        let keys = self.keys.for_signing(conn, now)?;
        Ok(TokenResponse {
            access_token: access::encode(&keys.signing, &claims)?,
            token_type: "Bearer",
            expires_in: exp - now,
            refresh_token: None,
            scope: claims.scope,
            issued_token_type: Some(ACCESS_TOKEN_TYPE),
            tenant: principal.tenant,
            tenants: Vec::new(),
        })
    }

    /// RFC 7009. A refresh token ends its whole family; an access token is listed as revoked
    /// until it expires. Unknown tokens and other clients' tokens change nothing (and, per
    /// §2.2, still get 200: the client cannot do anything useful with an error). API tokens
    /// are `unsupported_token_type` (§2.2.1): they are revoked through their own API and page,
    /// and a silent 200 would let the caller believe it had revoked one.
    pub fn revoke(
        &self,
        conn: &mut DbConnection,
        client: &Client,
        token: &str,
        now: i64,
    ) -> Result<(), OAuthError> {
        if api::well_formed(token).is_some() {
            return Err(OAuthError::UnsupportedTokenType(
                "API tokens are revoked through /api/v1/tenants/{tenant}/tokens or the /tokens page"
                    .into(),
            ));
        }
        if token.starts_with(REFRESH_TOKEN_PREFIX) {
            if let Some((_, family)) = db::tokens::find_refresh(conn, &secrets::digest(token))? {
                if family.client_id == client.client_id {
                    db::tokens::revoke_family(conn, &family.id, now)?;
                }
            }
            return Ok(());
        }
        if let Some(claims) =
            self.verified
                .verify(&self.keys, conn, token, &self.issuer, &self.audience, now)?
        {
            if claims.client_id == client.client_id {
                db::tokens::revoke_access_token(conn, &claims.jti, claims.exp)?;
            }
        }
        Ok(())
    }
}

fn parse_tenant(raw: &str) -> Result<TenantId, OAuthError> {
    TenantId::parse(raw).map_err(|e| OAuthError::InvalidRequest(e.to_string()))
}

/// The requested tenant if the user is a member of it, else the user's default tenant.
fn choose_tenant(user: &User, requested: Option<TenantId>) -> Result<TenantId, OAuthError> {
    match requested {
        Some(tenant) => {
            if user.tenants.iter().any(|m| m.id == tenant) {
                Ok(tenant)
            } else {
                Err(OAuthError::ForeignTenant(format!(
                    "the user is not a member of tenant {tenant}"
                )))
            }
        }
        None => user.default_tenant.clone().ok_or_else(|| {
            OAuthError::InvalidRequest("the user is not a member of any tenant".into())
        }),
    }
}

/// Deletes expired and revoked rows; never anything still valid.
pub fn purge(conn: &mut DbConnection, settings: &TokenSettings, now: i64) -> Result<Purged, Error> {
    write_transaction(conn, |conn| {
        db::tokens::purge(
            conn,
            now,
            settings.access_token_ttl,
            settings.lockout_window,
        )
    })
}

/// Time-dependent rules, driven by `now` on a real SQLite file: no sleeping.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::{self, NewClient};
    use crate::config::TokenSettings;
    use crate::db::{DatabaseUrl, Db};
    use crate::{tenants, users};

    const T0: i64 = 1_800_000_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        db: Db,
        service: TokenService,
        client: Client,
    }

    fn fixture(settings: TokenSettings) -> Fixture {
        let dir = tempfile::tempdir().expect("dir");
        let url = DatabaseUrl::parse(&dir.path().join("kf.db").display().to_string()).expect("url");
        let db = Db::connect(&url, &crate::db::DbOptions::pool(2)).expect("db");
        db.migrate().expect("migrate");
        let mut conn = db.conn().expect("conn");
        tenants::create(&mut conn, "acme", "Acme", T0).expect("tenant");
        tenants::create(&mut conn, "beta", "Beta", T0).expect("tenant");
        let roles = [
            (TenantId::parse("acme").expect("id"), users::Role::Owner),
            (TenantId::parse("beta").expect("id"), users::Role::Member),
        ];
        users::create(&mut conn, "alice", "pw", &roles, T0).expect("user");
        let (client, _) = clients::create(
            &mut conn,
            NewClient {
                name: "App".into(),
                grant_types: vec!["password".into(), "refresh_token".into()],
                scopes: vec!["read".into(), "write".into()],
                ..NewClient::default()
            },
            T0,
        )
        .expect("client");
        let service = TokenService::new(&mut conn, "https://kf.example".into(), settings, T0)
            .expect("service");
        drop(conn);
        Fixture {
            _dir: dir,
            db,
            service,
            client,
        }
    }

    impl Fixture {
        fn password(&self, password: &str, now: i64) -> Result<TokenResponse, OAuthError> {
            self.password_from("192.0.2.1", password, now)
        }

        fn password_from(
            &self,
            source: &str,
            password: &str,
            now: i64,
        ) -> Result<TokenResponse, OAuthError> {
            let mut conn = self.db.conn().expect("conn");
            let request = GrantRequest::Password {
                username: "Alice".into(),
                password: password.into(),
                scope: None,
                tenant: None,
                source: source.into(),
            };
            self.service.grant(&mut conn, &self.client, request, now)
        }

        fn refresh(&self, token: &str, now: i64) -> Result<TokenResponse, OAuthError> {
            let mut conn = self.db.conn().expect("conn");
            let request = GrantRequest::Refresh {
                refresh_token: token.into(),
                scope: None,
                tenant: None,
            };
            self.service.grant(&mut conn, &self.client, request, now)
        }

        fn active(&self, token: &str, now: i64) -> bool {
            let mut conn = self.db.conn().expect("conn");
            let answer = self
                .service
                .introspect(&mut conn, &self.client, token, now)
                .expect("introspect");
            answer["active"] == true
        }
    }

    fn refresh_token(response: &TokenResponse) -> String {
        response.refresh_token.clone().expect("refresh token")
    }

    #[test]
    fn access_tokens_expire_at_their_ttl() {
        let f = fixture(TokenSettings::default());
        let pair = f.password("pw", T0).expect("grant");
        assert_eq!(pair.expires_in, 600);
        assert!(f.active(&pair.access_token, T0 + 599));
        assert!(!f.active(&pair.access_token, T0 + 600));
    }

    /// Issue 8 asks for index searches only on the hot paths. Every statement a refresh and
    /// two introspections run is captured as executed and planned by SQLite itself.
    #[test]
    fn hot_statements_search_indexes_and_never_scan_a_table() {
        use diesel::connection::{Connection, InstrumentationEvent};
        use diesel::RunQueryDsl;
        use std::sync::{Arc, Mutex};

        #[derive(diesel::QueryableByName)]
        struct PlanStep {
            #[diesel(sql_type = diesel::sql_types::Text)]
            detail: String,
        }

        let f = fixture(TokenSettings::default());
        let first = f.password("pw", T0).expect("grant");
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut conn = f.db.conn().expect("conn");
        let sink = seen.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::StartQuery { query, .. } = event {
                sink.lock().expect("lock").push(query.to_string());
            }
        });
        let request = GrantRequest::Refresh {
            refresh_token: refresh_token(&first),
            scope: None,
            tenant: None,
        };
        let next = f
            .service
            .grant(&mut conn, &f.client, request, T0 + 1)
            .expect("refresh");
        for token in [next.access_token.clone(), refresh_token(&next)] {
            let answer = f
                .service
                .introspect(&mut conn, &f.client, &token, T0 + 2)
                .expect("introspect");
            assert_eq!(answer["active"], true);
        }
        conn.set_instrumentation(|_: InstrumentationEvent<'_>| {});

        let statements = seen.lock().expect("lock").clone();
        let crate::db::DbConnection::Sqlite(sqlite) = &mut *conn else {
            unreachable!("the fixture is SQLite");
        };
        let mut planned = 0;
        for statement in &statements {
            let sql = statement.split(" -- binds:").next().unwrap_or_default();
            let verb = sql.split_whitespace().next().unwrap_or_default();
            if !["SELECT", "UPDATE", "INSERT", "DELETE", "WITH"].contains(&verb) {
                continue;
            }
            let plan: Vec<PlanStep> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
                .load(sqlite)
                .expect("plan");
            for step in &plan {
                assert!(
                    !step.detail.starts_with("SCAN "),
                    "{sql}\n  {}",
                    step.detail
                );
            }
            planned += 1;
        }
        // The joined refresh read, the rotation's UPDATE and INSERT, the access token's
        // liveness and the refresh token's lookup at least.
        assert!(
            planned >= 5,
            "only {planned} statements planned: {statements:#?}"
        );
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
        let mut conn = f.db.conn().expect("conn");
        f.service
            .revoke(&mut conn, &f.client, &jwt, T0 + 3)
            .expect("revoke");
        assert!(!f.active(&jwt, T0 + 4));
    }

    #[test]
    fn refresh_tokens_die_when_idle_and_at_the_absolute_limit() {
        let settings = TokenSettings {
            refresh_token_ttl: 1000,
            refresh_token_idle_ttl: 300,
            ..TokenSettings::default()
        };
        let f = fixture(settings);
        let idle = refresh_token(&f.password("pw", T0).expect("grant"));
        assert!(
            matches!(f.refresh(&idle, T0 + 300), Err(OAuthError::InvalidGrant(_))),
            "idle for 300 s"
        );

        // Used every 250 s it lives until the absolute limit, whatever the idle rule says.
        let mut token = refresh_token(&f.password("pw", T0).expect("grant"));
        for step in 1..4 {
            token = refresh_token(
                &f.refresh(&token, T0 + 250 * step)
                    .expect("within both limits"),
            );
        }
        assert!(
            matches!(
                f.refresh(&token, T0 + 1000),
                Err(OAuthError::InvalidGrant(_))
            ),
            "absolute limit"
        );
    }

    #[test]
    fn reuse_within_the_grace_period_is_refused_without_revoking() {
        let f = fixture(TokenSettings {
            refresh_reuse_grace: 10,
            ..TokenSettings::default()
        });
        let first = refresh_token(&f.password("pw", T0).expect("grant"));
        let second = f.refresh(&first, T0 + 1).expect("rotate");
        assert!(
            matches!(f.refresh(&first, T0 + 11), Err(OAuthError::InvalidGrant(d)) if d.contains("just rotated"))
        );
        assert!(
            f.active(&second.access_token, T0 + 11),
            "the family survives a reuse within the grace"
        );
        // After the grace, the same reuse revokes the family.
        assert!(
            matches!(f.refresh(&first, T0 + 12), Err(OAuthError::InvalidGrant(d)) if d.contains("revoked"))
        );
        assert!(!f.active(&second.access_token, T0 + 12));
        assert!(f.refresh(&refresh_token(&second), T0 + 12).is_err());
    }

    #[test]
    fn lockout_holds_for_the_window_and_a_success_clears_it() {
        let f = fixture(TokenSettings {
            lockout_threshold: 3,
            lockout_window: 100,
            ..TokenSettings::default()
        });
        for _ in 0..2 {
            assert!(f.password("wrong", T0).is_err());
        }
        f.password("pw", T0)
            .expect("two failures do not lock; the success clears them");
        for _ in 0..3 {
            assert!(
                matches!(f.password("wrong", T0), Err(OAuthError::InvalidGrant(d)) if d.contains("invalid username"))
            );
        }
        assert!(matches!(
            f.password("pw", T0 + 99),
            Err(OAuthError::Locked { retry_after: 1 })
        ));
        f.password("pw", T0 + 100).expect("the window has passed");
    }

    #[test]
    fn one_source_locks_only_itself_until_the_user_ceiling() {
        let f = fixture(TokenSettings {
            lockout_threshold: 3,
            lockout_user_ceiling: 7,
            lockout_window: 100,
            ..TokenSettings::default()
        });
        for i in 0..3 {
            assert!(f.password_from("198.51.100.1", "wrong", T0 + i).is_err());
        }
        assert!(matches!(
            f.password_from("198.51.100.1", "pw", T0 + 10),
            Err(OAuthError::Locked { retry_after: 90 })
        ));
        f.password_from("192.0.2.1", "pw", T0 + 10)
            .expect("another source is not locked");
        // Four more failures from two other sources reach the ceiling of seven.
        for source in ["203.0.113.1", "203.0.113.1", "203.0.113.2", "203.0.113.2"] {
            assert!(matches!(
                f.password_from(source, "wrong", T0 + 20),
                Err(OAuthError::InvalidGrant(_))
            ));
        }
        assert!(
            matches!(
                f.password_from("192.0.2.1", "pw", T0 + 30),
                Err(OAuthError::Locked { retry_after: 70 })
            ),
            "the ceiling locks every source; it lifts when the oldest failure leaves the window"
        );
        f.password_from("192.0.2.1", "pw", T0 + 100)
            .expect("the first failure left the window: six are under the ceiling");
        f.password_from("198.51.100.1", "pw", T0 + 100)
            .expect("the first source's own lock lifted at the same moment");
    }

    #[test]
    fn purge_removes_only_what_can_no_longer_be_used() {
        let settings = TokenSettings {
            refresh_token_ttl: 1000,
            refresh_token_idle_ttl: 500,
            ..TokenSettings::default()
        };
        let f = fixture(settings.clone());
        let live = f.password("pw", T0).expect("grant");
        let reused = refresh_token(&f.password("pw", T0).expect("grant"));
        f.refresh(&reused, T0 + 1).expect("rotate");
        assert!(
            f.refresh(&reused, T0 + 2).is_err(),
            "reuse revokes that family"
        );
        let _ = f.password("wrong", T0);

        let mut conn = f.db.conn().expect("conn");
        let purged = purge(&mut conn, &settings, T0 + 10).expect("purge");
        assert_eq!(purged.token_families, 1, "{purged:?}");
        assert_eq!(purged.refresh_tokens, 2, "{purged:?}");
        assert_eq!(purged.login_failures, 0, "{purged:?}");
        drop(conn);
        assert!(f.active(&live.access_token, T0 + 10));
        let rotated = f
            .refresh(&refresh_token(&live), T0 + 10)
            .expect("the live family still refreshes");

        // The first token of the live chain was used at T0+10 and idles out at T0+500; the
        // current one idles out at T0+510.
        let mut conn = f.db.conn().expect("conn");
        let later = purge(&mut conn, &settings, T0 + 505).expect("purge");
        assert_eq!(
            later.refresh_tokens, 1,
            "only the used token past its idle expiry: {later:?}"
        );
        assert_eq!(
            later.login_failures, 0,
            "the failure is inside the lockout window: {later:?}"
        );
        drop(conn);
        let current = f
            .refresh(&refresh_token(&rotated), T0 + 505)
            .expect("the current token survives");

        let mut conn = f.db.conn().expect("conn");
        let last = purge(&mut conn, &settings, T0 + 900).expect("purge");
        assert_eq!(last.login_failures, 1, "{last:?}");
        drop(conn);
        assert!(f.active(&current.access_token, T0 + 900));
    }
}
