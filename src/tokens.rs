//! The token service: the grants, introspection and revocation, without HTTP. The OAuth
//! handlers and the VideoManager-compatible API are thin doors onto these functions.

pub mod access;
pub mod api;
mod code;
pub mod error;
mod exchange;
mod password;
mod refresh;
pub mod scope;
pub mod stream;
#[cfg(test)]
mod testing;

pub use exchange::ACCESS_TOKEN_TYPE;

use serde::Serialize;
use serde_json::{json, Value};

use crate::clients::{Client, GrantType};
use crate::config::TokenSettings;
use crate::db::tokens::{Family, Purged, RefreshToken};
use crate::db::{self, write_transaction, Conn};
use crate::error::Error;
use crate::keys::KeyRing;
use crate::secrets::{self, PlainSecret};
use crate::tenants::TenantId;
use crate::tokens::error::OAuthError;
use crate::users::{TenantRefusal, User};
use access::AccessClaims;

pub const REFRESH_TOKEN_PREFIX: &str = "kf_rt_";

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
    verified_streams: stream::VerifiedStreamTokens,
}

impl GrantRequest {
    pub fn grant_type(&self) -> GrantType {
        match self {
            GrantRequest::Password { .. } => GrantType::Password,
            GrantRequest::Refresh { .. } => GrantType::RefreshToken,
            GrantRequest::AuthorizationCode { .. } => GrantType::AuthorizationCode,
            GrantRequest::TokenExchange { .. } => GrantType::TokenExchange,
        }
    }
}

impl TokenService {
    /// Loads (creating on first start) the signing keys.
    pub async fn new(
        conn: &mut Conn,
        issuer: String,
        settings: TokenSettings,
        now: i64,
    ) -> Result<Self, Error> {
        let keys = KeyRing::load(conn, now, settings.access_token_ttl).await?;
        let audience = settings.audience.clone().unwrap_or_else(|| issuer.clone());
        Ok(Self {
            issuer,
            audience,
            settings,
            keys,
            verified: access::VerifiedTokens::default(),
            verified_streams: stream::VerifiedStreamTokens::default(),
        })
    }

    pub async fn grant(
        &self,
        conn: &mut Conn,
        client: &Client,
        request: GrantRequest,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let grant_type = request.grant_type();
        if !client.allows(grant_type) {
            return Err(OAuthError::UnauthorizedClient(format!(
                "this client is not allowed the {grant_type} grant"
            )));
        }
        match request {
            GrantRequest::Password {
                username,
                password,
                scope,
                tenant,
                source,
            } => {
                self.password_grant(
                    conn,
                    client,
                    &username,
                    &password,
                    &source,
                    scope.as_deref(),
                    tenant.as_deref(),
                    now,
                )
                .await
            }
            GrantRequest::Refresh {
                refresh_token,
                scope,
                tenant,
            } => {
                self.refresh_grant(
                    conn,
                    client,
                    &refresh_token,
                    scope.as_deref(),
                    tenant.as_deref(),
                    now,
                )
                .await
            }
            GrantRequest::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                self.code_grant(
                    conn,
                    client,
                    &code,
                    redirect_uri.as_deref(),
                    code_verifier.as_deref(),
                    now,
                )
                .await
            }
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
                .await
            }
        }
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
    async fn respond(
        &self,
        conn: &mut Conn,
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
        let keys = self.keys.for_signing(conn, now).await?;
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
    pub async fn introspect(
        &self,
        conn: &mut Conn,
        client: &Client,
        token: &str,
        now: i64,
    ) -> Result<Value, OAuthError> {
        let answer = if token.starts_with(REFRESH_TOKEN_PREFIX) {
            self.introspect_refresh(conn, client, token, now).await?
        } else if api::well_formed(token).is_some() {
            self.introspect_api_token(conn, token, now).await?
        } else {
            self.introspect_access(conn, token, now).await?
        };
        Ok(answer.unwrap_or_else(|| json!({ "active": false })))
    }

    /// RFC 7009. A refresh token ends its whole family; an access token is listed as revoked
    /// until it expires. Unknown tokens and other clients' tokens change nothing (and, per
    /// §2.2, still get 200: the client cannot do anything useful with an error). API tokens
    /// are `unsupported_token_type` (§2.2.1): they are revoked through their own API and page,
    /// and a silent 200 would let the caller believe it had revoked one.
    pub async fn revoke(
        &self,
        conn: &mut Conn,
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
            self.revoke_refresh(conn, client, token, now).await?;
        } else {
            self.revoke_access(conn, client, token, now).await?;
        }
        Ok(())
    }
}

fn parse_tenant(raw: &str) -> Result<TenantId, OAuthError> {
    TenantId::parse(raw).map_err(|e| OAuthError::InvalidRequest(e.to_string()))
}

/// The tenant a grant is scoped to: `User::choose_tenant`, in the protocol's words.
fn choose_tenant(user: &User, requested: Option<TenantId>) -> Result<TenantId, OAuthError> {
    user.choose_tenant(requested.as_ref())
        .map(|m| m.id.clone())
        .map_err(|refusal| match refusal {
            TenantRefusal::NotAMember(_) => OAuthError::ForeignTenant(refusal.to_string()),
            TenantRefusal::NoTenant => OAuthError::InvalidRequest(refusal.to_string()),
        })
}

/// Deletes expired and revoked rows; never anything still valid.
pub async fn purge(conn: &mut Conn, settings: &TokenSettings, now: i64) -> Result<Purged, Error> {
    write_transaction(conn, async |conn| {
        db::tokens::purge(
            conn,
            now,
            settings.access_token_ttl,
            settings.lockout_window,
        )
        .await
    })
    .await
}

/// Time-dependent rules, driven by `now` on a real SQLite file: no sleeping.
#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

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
        let mut conn = f.conn();
        let sink = seen.clone();
        let crate::db::Conn::Sqlite(pooled) = &mut conn else {
            unreachable!("the fixture is SQLite");
        };
        crate::db::sqlite(pooled).set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::StartQuery { query, .. } = event {
                sink.lock().expect("lock").push(query.to_string());
            }
        });
        let request = GrantRequest::Refresh {
            refresh_token: refresh_token(&first),
            scope: None,
            tenant: None,
        };
        let next =
            block_on(f.service.grant(&mut conn, &f.client, request, T0 + 1)).expect("refresh");
        for token in [next.access_token.clone(), refresh_token(&next)] {
            let answer = block_on(f.service.introspect(&mut conn, &f.client, &token, T0 + 2))
                .expect("introspect");
            assert_eq!(answer["active"], true);
        }
        let crate::db::Conn::Sqlite(pooled) = &mut conn else {
            unreachable!("the fixture is SQLite");
        };
        let sqlite = crate::db::sqlite(pooled);
        sqlite.set_instrumentation(|_: InstrumentationEvent<'_>| {});

        let statements = seen.lock().expect("lock").clone();
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

        let mut conn = f.conn();
        let purged = block_on(purge(&mut conn, &settings, T0 + 10)).expect("purge");
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
        let mut conn = f.conn();
        let later = block_on(purge(&mut conn, &settings, T0 + 505)).expect("purge");
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

        let mut conn = f.conn();
        let last = block_on(purge(&mut conn, &settings, T0 + 900)).expect("purge");
        assert_eq!(last.login_failures, 1, "{last:?}");
        drop(conn);
        assert!(f.active(&current.access_token, T0 + 900));
    }
}
