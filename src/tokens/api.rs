//! Long-lived API tokens: personal (a user's, acting with the user's current role in one
//! tenant) and system (the tenant's, with the roles chosen at creation).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::api_tokens::ApiTokenRow;
use crate::db::{self, Conn};
use crate::error::Error;
use crate::secrets::{self, PlainSecret};
use crate::tenants::TenantId;
use crate::users::Role;

/// Prefixes that secret scanners can match (and people can recognise).
pub const PERSONAL_PREFIX: &str = "kfpat_";
pub const SYSTEM_PREFIX: &str = "kfsat_";
/// 256 random bits in unpadded base64url.
const RANDOM_LEN: usize = 43;
/// 24 bits of SHA-256 over prefix and random part: a typo fails without a database read.
const CHECKSUM_LEN: usize = 4;
const CHECKSUM_CHARS: usize = 6;
/// Last use is written at most this often per token, not on every request.
const LAST_USED_RESOLUTION: i64 = 60;
const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Personal,
    System,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Personal => "personal",
            Kind::System => "system",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Kind::Personal => PERSONAL_PREFIX,
            Kind::System => SYSTEM_PREFIX,
        }
    }

    /// The `token_type` introspection reports.
    pub fn token_type(self) -> &'static str {
        match self {
            Kind::Personal => "personal_access_token",
            Kind::System => "system_access_token",
        }
    }

    pub fn parse(raw: &str) -> Option<Kind> {
        match raw {
            "personal" => Some(Kind::Personal),
            "system" => Some(Kind::System),
            _ => None,
        }
    }
}

fn checksum(body: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(body.as_bytes())[..CHECKSUM_LEN])
}

fn generate(kind: Kind) -> PlainSecret {
    let random = URL_SAFE_NO_PAD.encode(secrets::random_bytes::<32>());
    let body = format!("{}{random}", kind.prefix());
    PlainSecret::from_string(format!("{body}{}", checksum(&body)))
}

/// The kind of a well-formed token: right prefix, length and checksum. No database involved.
pub fn well_formed(raw: &str) -> Option<Kind> {
    let kind = if raw.starts_with(PERSONAL_PREFIX) {
        Kind::Personal
    } else if raw.starts_with(SYSTEM_PREFIX) {
        Kind::System
    } else {
        return None;
    };
    if raw.len() != kind.prefix().len() + RANDOM_LEN + CHECKSUM_CHARS || !raw.is_ascii() {
        return None;
    }
    let (body, sum) = raw.split_at(raw.len() - CHECKSUM_CHARS);
    (checksum(body) == sum).then_some(kind)
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub username: String,
}

/// A token as listed: never its secret.
#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub kind: Kind,
    pub tenant: TenantId,
    /// The user a personal token belongs to.
    pub owner: Option<Owner>,
    /// A system token's roles; a personal token acts with its owner's current role.
    pub roles: Vec<Role>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// The scope an OAuth access token needs to manage tokens (create, renew, revoke). Clients get
/// it only when their operator registered them with it: a third-party application's token, or
/// one meant for an unrelated API, must not be able to mint credentials that outlive it.
pub const MANAGE_SCOPE: &str = "keyframe:tokens";

/// What a principal proved itself with: it decides what it may manage, beyond its roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A signed-in browser session on Keyframe's own pages.
    Session,
    /// An OAuth access token, with the scopes it carries.
    AccessToken { scopes: Vec<String> },
    /// An API token (id and kind), presented as itself or as a JWT exchanged from it.
    ApiToken { id: String, kind: Kind },
}

/// Who is calling Keyframe's own APIs, in which tenant, with which roles.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: TenantId,
    /// `None` for a system token: it acts for the tenant, not for a person.
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub roles: Vec<Role>,
    pub credential: Credential,
    pub expires_at: Option<i64>,
    pub created_at: Option<i64>,
}

impl Principal {
    pub fn is_owner(&self) -> bool {
        self.roles.contains(&Role::Owner)
    }

    pub fn is_admin_or_owner(&self) -> bool {
        self.roles
            .iter()
            .any(|r| matches!(r, Role::Owner | Role::Admin))
    }

    /// The API token this principal presented, if any.
    pub fn api_token(&self) -> Option<(&str, Kind)> {
        match &self.credential {
            Credential::ApiToken { id, kind } => Some((id, *kind)),
            _ => None,
        }
    }

    /// Whether this credential may change API tokens at all (roles decide which ones). An API
    /// token never may, nor a JWT exchanged from one: otherwise a leaked token could mint
    /// successors that outlive its revocation.
    pub fn may_manage_tokens(&self) -> Result<(), ApiError> {
        match &self.credential {
            Credential::Session => Ok(()),
            Credential::AccessToken { scopes } if scopes.iter().any(|s| s == MANAGE_SCOPE) => {
                Ok(())
            }
            Credential::AccessToken { .. } => Err(ApiError::InsufficientScope(format!(
                "managing API tokens needs an access token with the {MANAGE_SCOPE} scope"
            ))),
            Credential::ApiToken { .. } => Err(ApiError::InsufficientScope(format!(
                "API tokens cannot manage API tokens: sign in, or use an access token with the \
                 {MANAGE_SCOPE} scope"
            ))),
        }
    }

    /// `sub` of what this principal gets: the user, or `tenant:<id>` for a system token.
    pub fn subject(&self) -> String {
        match &self.user_id {
            Some(user) => user.clone(),
            None => format!("tenant:{}", self.tenant),
        }
    }

    pub fn scope(&self) -> String {
        self.roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// RFC 6750 §3.1: the credential is valid but lacks [`MANAGE_SCOPE`].
    #[error("{0}")]
    InsufficientScope(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(#[from] Error),
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        ApiError::Internal(error.into())
    }
}

/// What a `POST .../tokens` asks for.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl NewApiToken {
    /// From a form that always posts its role boxes: a personal token acts with its owner's
    /// role, so roles chosen for one are dropped here instead of refused by `create`.
    pub fn from_form(
        name: String,
        kind: String,
        roles: Vec<String>,
        expires_at: Option<i64>,
    ) -> Self {
        let roles = if kind == Kind::System.as_str() {
            roles
        } else {
            Vec::new()
        };
        Self {
            name,
            kind,
            roles,
            expires_at,
        }
    }
}

fn in_tenant(principal: &Principal, tenant: &TenantId) -> Result<(), ApiError> {
    if &principal.tenant == tenant {
        Ok(())
    } else {
        // Authorization is per tenant: a credential of one tenant sees nothing of another.
        Err(ApiError::Forbidden(format!(
            "this credential is not valid for tenant {tenant}"
        )))
    }
}

/// What is being done to an existing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Renew,
    Revoke,
}

/// Only people change tokens (a system token cannot, so a leaked one cannot persist itself).
/// A personal token is renewed only by its own user: whoever renews it receives its secret and
/// could act as that user. Owners and admins may revoke others' personal tokens; system tokens
/// are the owners' to renew and revoke.
pub fn may_change(principal: &Principal, token: &ApiToken, change: Change) -> bool {
    let Some(user) = &principal.user_id else {
        return false;
    };
    match token.kind {
        Kind::Personal => {
            token.owner.as_ref().is_some_and(|o| &o.id == user)
                || (change == Change::Revoke && principal.is_admin_or_owner())
        }
        Kind::System => principal.is_owner(),
    }
}

pub async fn create(
    conn: &mut Conn,
    principal: &Principal,
    tenant: &TenantId,
    new: NewApiToken,
    now: i64,
) -> Result<(ApiToken, PlainSecret), ApiError> {
    in_tenant(principal, tenant)?;
    principal.may_manage_tokens()?;
    let name = new.name.trim().to_owned();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(ApiError::Invalid(format!(
            "the name must be 1 to {MAX_NAME_CHARS} visible characters"
        )));
    }
    let kind = Kind::parse(&new.kind)
        .ok_or_else(|| ApiError::Invalid("kind must be personal or system".into()))?;
    if let Some(expires_at) = new.expires_at {
        if expires_at <= now {
            return Err(ApiError::Invalid("expires_at is in the past".into()));
        }
    }
    let mut roles: Vec<Role> = Vec::new();
    for role in &new.roles {
        let role: Role = role
            .parse()
            .map_err(|e: Error| ApiError::Invalid(e.to_string()))?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    let user_id = match kind {
        Kind::Personal => {
            let user = principal.user_id.clone().ok_or_else(|| {
                ApiError::Forbidden("personal tokens belong to a person: sign in as one".into())
            })?;
            if !roles.is_empty() {
                return Err(ApiError::Invalid(
                    "a personal token acts with its owner's role: roles are for system tokens"
                        .into(),
                ));
            }
            Some(user)
        }
        Kind::System => {
            if principal.user_id.is_none() || !principal.is_owner() {
                return Err(ApiError::Forbidden(
                    "only the tenant's owners create system tokens".into(),
                ));
            }
            if roles.is_empty() {
                return Err(ApiError::Invalid(
                    "a system token needs at least one role".into(),
                ));
            }
            None
        }
    };
    let secret = generate(kind);
    let row = ApiTokenRow {
        id: secrets::random_id(),
        tenant_id: tenant.as_str().to_owned(),
        kind: kind.as_str().to_owned(),
        user_id,
        created_by: principal.subject(),
        name,
        roles: db::to_json_list(
            &roles
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect::<Vec<_>>(),
        ),
        digest: secret.digest(),
        created_at: now,
        expires_at: new.expires_at,
        last_used_at: None,
    };
    db::api_tokens::insert(conn, &row).await?;
    let token = db::api_tokens::find(conn, tenant, &row.id)
        .await?
        .ok_or_else(|| ApiError::Internal(Error::Internal("created token vanished".into())))?;
    Ok((token, secret))
}

/// A user sees their own personal tokens; an admin also every member's personal tokens (to
/// revoke them); an owner also the tenant's system tokens.
pub async fn list(
    conn: &mut Conn,
    principal: &Principal,
    tenant: &TenantId,
) -> Result<Vec<ApiToken>, ApiError> {
    in_tenant(principal, tenant)?;
    let Some(user) = &principal.user_id else {
        return Err(ApiError::Forbidden(
            "a system token cannot list tokens".into(),
        ));
    };
    let all = db::api_tokens::list(conn, tenant).await?;
    let owner = principal.is_owner();
    let admin = principal.is_admin_or_owner();
    Ok(all
        .into_iter()
        .filter(|t| match t.kind {
            Kind::System => owner,
            Kind::Personal => admin || t.owner.as_ref().is_some_and(|o| &o.id == user),
        })
        .collect())
}

async fn managed(
    conn: &mut Conn,
    principal: &Principal,
    tenant: &TenantId,
    id: &str,
    change: Change,
) -> Result<ApiToken, ApiError> {
    in_tenant(principal, tenant)?;
    principal.may_manage_tokens()?;
    let token = db::api_tokens::find(conn, tenant, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no token {id} in tenant {tenant}")))?;
    if may_change(principal, &token, change) {
        Ok(token)
    } else if change == Change::Renew && token.kind == Kind::Personal {
        Err(ApiError::Forbidden(
            "a personal token is renewed only by the user it belongs to".into(),
        ))
    } else {
        Err(ApiError::Forbidden(
            "your role does not allow changing this token".into(),
        ))
    }
}

/// The tenants a principal may act in: every membership of its user, or a system token's
/// own tenant alone. `None` when the user no longer exists.
pub async fn usable_tenants(
    conn: &mut Conn,
    principal: &Principal,
) -> Result<Option<Vec<super::TenantRef>>, Error> {
    let Some(user_id) = &principal.user_id else {
        let tenant = crate::tenants::get(conn, &principal.tenant).await?;
        return Ok(Some(vec![super::TenantRef {
            id: tenant.id,
            name: tenant.name,
        }]));
    };
    Ok(db::users::find_by_id(conn, user_id).await?.map(|user| {
        user.tenants
            .into_iter()
            .map(|m| super::TenantRef {
                id: m.id,
                name: m.name,
            })
            .collect()
    }))
}

/// A new secret for the same token (id, name and roles stay); the old secret fails at once.
pub async fn renew(
    conn: &mut Conn,
    principal: &Principal,
    tenant: &TenantId,
    id: &str,
) -> Result<(ApiToken, PlainSecret), ApiError> {
    let token = managed(conn, principal, tenant, id, Change::Renew).await?;
    let secret = generate(token.kind);
    db::api_tokens::set_digest(conn, &token.tenant, &token.id, &secret.digest()).await?;
    Ok((token, secret))
}

pub async fn delete(
    conn: &mut Conn,
    principal: &Principal,
    tenant: &TenantId,
    id: &str,
) -> Result<(), ApiError> {
    let token = managed(conn, principal, tenant, id, Change::Revoke).await?;
    db::api_tokens::delete(conn, &token.tenant, &token.id).await?;
    Ok(())
}

/// The principal behind an API token, if it is well formed, known, unexpired and (for a
/// personal token) its owner is enabled and still a member of the tenant.
pub async fn authenticate(
    conn: &mut Conn,
    raw: &str,
    now: i64,
) -> Result<Option<Principal>, Error> {
    if well_formed(raw).is_none() {
        return Ok(None);
    }
    let Some(row) = db::api_tokens::by_digest(conn, &secrets::digest(raw)).await? else {
        return Ok(None);
    };
    let principal = principal_of(conn, &row, now).await?;
    if principal.is_some()
        && row
            .last_used_at
            .is_none_or(|t| t <= now - LAST_USED_RESOLUTION)
    {
        let tenant = TenantId::from_db(row.tenant_id.clone());
        db::api_tokens::touch(conn, &tenant, &row.id, now, now - LAST_USED_RESOLUTION).await?;
    }
    Ok(principal)
}

/// The principal behind a token row, if it still holds.
pub async fn principal_of(
    conn: &mut Conn,
    row: &ApiTokenRow,
    now: i64,
) -> Result<Option<Principal>, Error> {
    if row.expires_at.is_some_and(|t| t <= now) {
        return Ok(None);
    }
    let tenant = TenantId::from_db(row.tenant_id.clone());
    let credential = Credential::ApiToken {
        id: row.id.clone(),
        kind: Kind::parse(&row.kind).unwrap_or(Kind::System),
    };
    let base = |user_id, username, roles| Principal {
        tenant: tenant.clone(),
        user_id,
        username,
        roles,
        credential: credential.clone(),
        expires_at: row.expires_at,
        created_at: Some(row.created_at),
    };
    match &row.user_id {
        Some(user_id) => {
            let Some(user) = db::users::find_by_id(conn, user_id).await? else {
                return Ok(None);
            };
            if user.disabled {
                return Ok(None);
            }
            let Some(membership) = user.membership(&tenant) else {
                return Ok(None);
            };
            Ok(Some(base(
                Some(user.id.clone()),
                Some(user.username.to_string()),
                vec![membership.role],
            )))
        }
        None => {
            let roles = db::from_json_list(&row.roles)
                .iter()
                .filter_map(|r| r.parse().ok())
                .collect();
            Ok(Some(base(None, None, roles)))
        }
    }
}

impl super::TokenService {
    /// Who a bearer token on Keyframe's own APIs speaks for: an API token, or an access token
    /// (the user with their current role in the token's tenant).
    pub async fn principal(
        &self,
        conn: &mut Conn,
        bearer: &str,
        now: i64,
    ) -> Result<Option<Principal>, Error> {
        if well_formed(bearer).is_some() {
            return authenticate(conn, bearer, now).await;
        }
        let Some((claims, _)) = self.verify_access_token(conn, bearer, now).await? else {
            return Ok(None);
        };
        if claims
            .sid
            .starts_with(super::exchange::EXCHANGED_SID_PREFIX)
        {
            return self.exchanged_principal(conn, &claims, now).await;
        }
        let Some(user) = db::users::find_by_id(conn, &claims.sub).await? else {
            return Ok(None);
        };
        let tenant = TenantId::from_db(claims.tenant.clone());
        let Some(membership) = user.membership(&tenant) else {
            return Ok(None);
        };
        Ok(Some(Principal {
            roles: vec![membership.role],
            tenant,
            user_id: Some(user.id.clone()),
            username: Some(user.username.to_string()),
            credential: Credential::AccessToken {
                scopes: super::scope::split(&claims.scope),
            },
            expires_at: Some(claims.exp),
            created_at: Some(claims.iat),
        }))
    }

    /// RFC 7662 for an API token: its kind, roles as scope, owner and tenant.
    pub(super) async fn introspect_api_token(
        &self,
        conn: &mut Conn,
        token: &str,
        now: i64,
    ) -> Result<Option<serde_json::Value>, Error> {
        use serde_json::json;
        let Some(principal) = authenticate(conn, token, now).await? else {
            return Ok(None);
        };
        let kind = principal.api_token().map_or(Kind::System, |(_, kind)| kind);
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
        Ok(Some(answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_prefix_and_checksum() {
        let personal = generate(Kind::Personal);
        let system = generate(Kind::System);
        assert_eq!(well_formed(personal.expose()), Some(Kind::Personal));
        assert_eq!(well_formed(system.expose()), Some(Kind::System));
        assert!(personal.expose().starts_with("kfpat_") && system.expose().starts_with("kfsat_"));
        // One changed character anywhere fails the checksum.
        let raw = personal.expose();
        for i in PERSONAL_PREFIX.len()..raw.len() {
            let mut bytes = raw.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let typo = String::from_utf8(bytes).expect("ascii");
            assert_eq!(well_formed(&typo), None, "{typo}");
        }
        assert_eq!(well_formed(&raw[..raw.len() - 1]), None);
        assert_eq!(well_formed("kfpat_short"), None);
    }
}
