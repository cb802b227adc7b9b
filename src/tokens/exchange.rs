//! Token exchange (RFC 8693): an API token traded for a short-lived JWT; and the API token
//! behind such a JWT, while it still holds.

use super::access::{self, AccessClaims};
use super::{api, scope, TokenResponse, TokenService};
use crate::clients::Client;
use crate::db::{self, Conn};
use crate::error::Error;
use crate::secrets;
use crate::tenants::TenantId;
use crate::tokens::error::OAuthError;

/// RFC 8693 §3: the one token type Keyframe takes and issues in an exchange.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// `sid` of a JWT exchanged for an API token: `apitoken:<id>:<generation>`, so that deleting
/// or renewing the API token ends the JWTs it was traded for.
pub(super) const EXCHANGED_SID_PREFIX: &str = "apitoken:";

impl TokenService {
    /// RFC 8693: an API token traded for a short-lived JWT that resource servers verify
    /// offline. The JWT carries the token's tenant, its roles as scope, and as `sub` the owning
    /// user or `tenant:<id>` for a system token.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn exchange_grant(
        &self,
        conn: &mut Conn,
        client: &Client,
        subject_token: &str,
        subject_token_type: &str,
        requested_token_type: Option<&str>,
        scope: Option<&str>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
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
        let principal = api::authenticate(conn, subject_token, now)
            .await?
            .ok_or_else(unusable)?;
        let (id, _) = principal.api_token().ok_or_else(unusable)?;
        let id = id.to_owned();
        // RFC 8693 §2.1: at most what the subject token carries (its roles).
        let scopes = scope::resolve(scope, &scope::split(&principal.scope()))?;
        let row = db::api_tokens::by_id(conn, &principal.tenant, &id)
            .await?
            .ok_or_else(unusable)?;
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
        let keys = self.keys.for_signing(conn, now).await?;
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

    /// The API token behind an exchanged JWT, while it (this generation of it) still holds.
    pub(super) async fn exchanged_principal(
        &self,
        conn: &mut Conn,
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
        if db::tokens::is_revoked(conn, &claims.jti).await? {
            return Ok(None);
        }
        let tenant = TenantId::from_db(claims.tenant.clone());
        let Some(row) = db::api_tokens::by_id(conn, &tenant, id).await? else {
            return Ok(None);
        };
        if !row.digest.starts_with(generation) {
            return Ok(None);
        }
        let Some(mut principal) = api::principal_of(conn, &row, now)
            .await?
            .filter(|p| p.tenant.as_str() == claims.tenant)
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
}
