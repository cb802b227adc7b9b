//! Users and their memberships in tenants.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::config::TokenSettings;
use crate::db::{self, write_transaction, Conn};
use crate::error::Error;
use crate::passwords;
use crate::secrets;
use crate::tenants::TenantId;

/// A username as stored: case-insensitive, so it is kept in lower case.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Username(String);

impl Username {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let lowered = raw.to_lowercase();
        let length = lowered.chars().count();
        if length == 0 || length > 128 {
            return Err(Error::Invalid(format!(
                "invalid username {raw:?}: use 1 to 128 characters"
            )));
        }
        if lowered.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::Invalid(format!(
                "invalid username {raw:?}: spaces and control characters are not allowed"
            )));
        }
        Ok(Self(lowered))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn from_db(raw: String) -> Self {
        Self(raw)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({})", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "owner" => Ok(Role::Owner),
            "admin" => Ok(Role::Admin),
            "member" => Ok(Role::Member),
            other => Err(Error::Invalid(format!(
                "unknown role {other:?}: use owner, admin or member"
            ))),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `ID` or `ID:ROLE`, as `--tenant` takes it; the role defaults to `member`.
pub fn parse_tenant_role(spec: &str) -> Result<(TenantId, Role), Error> {
    match spec.split_once(':') {
        Some((id, role)) => Ok((TenantId::parse(id)?, role.parse()?)),
        None => Ok((TenantId::parse(spec)?, Role::Member)),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    pub id: TenantId,
    pub name: String,
    pub role: Role,
}

/// A user as shown to operators and to the rest of Keyframe: never the password hash.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub username: Username,
    pub disabled: bool,
    pub default_tenant: Option<TenantId>,
    pub tenants: Vec<Membership>,
    pub created_at: i64,
}

/// Why a request cannot act in the tenant it asked for (or in any).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantRefusal {
    #[error("the user is not a member of tenant {0}")]
    NotAMember(TenantId),
    #[error("the user is not a member of any tenant")]
    NoTenant,
}

impl User {
    pub fn membership(&self, tenant: &TenantId) -> Option<&Membership> {
        self.tenants.iter().find(|m| &m.id == tenant)
    }

    /// The one rule for "which tenant" a request acts in: the tenant it names when the user is
    /// a member of it, else the user's default tenant.
    pub fn choose_tenant(
        &self,
        requested: Option<&TenantId>,
    ) -> Result<&Membership, TenantRefusal> {
        match requested {
            Some(tenant) => self
                .membership(tenant)
                .ok_or_else(|| TenantRefusal::NotAMember(tenant.clone())),
            None => self
                .default_tenant
                .as_ref()
                .and_then(|tenant| self.membership(tenant))
                .ok_or(TenantRefusal::NoTenant),
        }
    }
}

pub async fn create(
    conn: &mut Conn,
    username: &str,
    password: &str,
    tenants: &[(TenantId, Role)],
    now: i64,
) -> Result<User, Error> {
    let username = Username::parse(username)?;
    for (i, (tenant, _)) in tenants.iter().enumerate() {
        if tenants[..i].iter().any(|(t, _)| t == tenant) {
            return Err(Error::Invalid(format!("tenant {tenant} is named twice")));
        }
    }
    // Hash outside the transaction: it takes tens of milliseconds and holds no lock.
    let password_hash = hash_off_loop(conn, password).await?;
    let id = uuid::Uuid::new_v4().to_string();
    write_transaction(conn, async |conn| {
        for (tenant, _) in tenants {
            crate::tenants::get(conn, tenant).await?;
        }
        let default = tenants.first().map(|(t, _)| t);
        db::users::insert(conn, &id, &username, &password_hash, default, now).await?;
        for (tenant, role) in tenants {
            db::users::insert_membership(conn, &id, tenant, *role, now).await?;
        }
        find_in(conn, &username).await
    })
    .await
}

async fn hash_off_loop(conn: &mut Conn, password: &str) -> Result<String, Error> {
    let password = password.to_owned();
    conn.off_loop(move || passwords::hash(&password)).await?
}

pub async fn list(conn: &mut Conn) -> Result<Vec<User>, Error> {
    db::users::list(conn).await
}

pub async fn find(conn: &mut Conn, username: &str) -> Result<User, Error> {
    find_in(conn, &Username::parse(username)?).await
}

async fn find_in(conn: &mut Conn, username: &Username) -> Result<User, Error> {
    db::users::find(conn, username)
        .await?
        .ok_or_else(|| Error::NotFound(format!("unknown user {username}")))
}

/// The user with this username and password, if both match and the user is not disabled.
/// Unknown users cost the same time as known ones (a dummy verification).
pub async fn check_password(
    conn: &mut Conn,
    username: &str,
    password: &str,
) -> Result<Option<User>, Error> {
    let username = Username::parse(username).ok();
    let hash = match &username {
        Some(username) => db::users::password_hash(conn, username).await?,
        None => None,
    };
    // argon2 takes tens of milliseconds of CPU: never on an event loop.
    let password = password.to_owned();
    let matches = conn
        .off_loop(move || match hash {
            Some(hash) => passwords::verify(&password, &hash),
            None => {
                passwords::verify_dummy(&password);
                false
            }
        })
        .await?;
    match username {
        Some(username) if matches => {
            let user = find_in(conn, &username).await?;
            Ok((!user.disabled).then_some(user))
        }
        _ => Ok(None),
    }
}

pub async fn add_tenant(
    conn: &mut Conn,
    username: &str,
    tenant: &str,
    role: Role,
    now: i64,
) -> Result<User, Error> {
    let username = Username::parse(username)?;
    let tenant = TenantId::parse(tenant)?;
    write_transaction(conn, async |conn| {
        let user = find_in(conn, &username).await?;
        crate::tenants::get(conn, &tenant).await?;
        if let Some(existing) = user.membership(&tenant) {
            return Err(Error::Conflict(format!(
                "user {username} is already a member of tenant {tenant} (role {})",
                existing.role
            )));
        }
        db::users::insert_membership(conn, &user.id, &tenant, role, now).await?;
        if user.default_tenant.is_none() {
            db::users::set_default_tenant(conn, &user.id, Some(&tenant), now).await?;
        }
        find_in(conn, &username).await
    })
    .await
}

/// Leaving the default tenant makes the oldest remaining membership the default.
pub async fn remove_tenant(
    conn: &mut Conn,
    username: &str,
    tenant: &str,
    now: i64,
) -> Result<User, Error> {
    let username = Username::parse(username)?;
    let tenant = TenantId::parse(tenant)?;
    write_transaction(conn, async |conn| {
        let user = find_in(conn, &username).await?;
        if user.membership(&tenant).is_none() {
            return Err(Error::NotFound(format!(
                "user {username} is not a member of tenant {tenant}"
            )));
        }
        db::users::delete_membership(conn, &user.id, &tenant).await?;
        if user.default_tenant.as_ref() == Some(&tenant) {
            let next = db::users::oldest_membership(conn, &user.id).await?;
            db::users::set_default_tenant(conn, &user.id, next.as_ref(), now).await?;
        }
        find_in(conn, &username).await
    })
    .await
}

pub async fn set_disabled(
    conn: &mut Conn,
    username: &str,
    disabled: bool,
    now: i64,
) -> Result<User, Error> {
    let username = Username::parse(username)?;
    write_transaction(conn, async |conn| {
        let user = find_in(conn, &username).await?;
        db::users::set_disabled(conn, &user.id, disabled, now).await?;
        find_in(conn, &username).await
    })
    .await
}

pub async fn set_password(
    conn: &mut Conn,
    username: &str,
    password: &str,
    now: i64,
) -> Result<User, Error> {
    let username = Username::parse(username)?;
    let password_hash = hash_off_loop(conn, password).await?;
    write_transaction(conn, async |conn| {
        let user = find_in(conn, &username).await?;
        db::users::set_password_hash(conn, &user.id, &password_hash, now).await?;
        find_in(conn, &username).await
    })
    .await
}

/// Why a sign-in was refused. Both refusals look the same whether or not the user exists.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("invalid username or password")]
    Invalid,
    /// Too many failures for this username from this source, or from all sources.
    #[error("the account is temporarily locked")]
    Locked { retry_after: i64 },
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Checks a username and password, with the lockout: the password grant and the login pages
/// give the same answers, in about the same time for unknown users. `source` is the address
/// the attempt came from (see `proxy`).
pub async fn sign_in(
    conn: &mut Conn,
    lockout: &TokenSettings,
    username: &str,
    password: &str,
    source: &str,
    now: i64,
) -> Result<User, SignInError> {
    // The lockout counts attempts per username whether or not it exists, so that it does
    // not reveal which ones do.
    let key = Username::parse(username)
        .map(|u| u.as_str().to_owned())
        .unwrap_or_else(|_| username.to_lowercase());
    let failures =
        db::login_failures::recent_failures(conn, &key, now - lockout.lockout_window).await?;
    if let Some(retry_after) = locked_for(&failures, source, lockout, now) {
        return Err(SignInError::Locked { retry_after });
    }
    let Some(user) = check_password(conn, username, password).await? else {
        db::login_failures::record_failure(conn, &secrets::random_id(), &key, source, now).await?;
        return Err(SignInError::Invalid);
    };
    // A success clears its source's count (most sign-ins have nothing to clear, so skip
    // the write); the other sources' failures still count towards the ceiling.
    if failures.iter().any(|(s, _)| s == source) {
        db::login_failures::clear_failures(conn, &key, source).await?;
    }
    Ok(user)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_acts_in_the_named_tenant_if_a_member_else_the_default() {
        let tenant = |id: &str| TenantId::parse(id).expect("id");
        let member = |id: &str, role| Membership {
            id: tenant(id),
            name: id.to_uppercase(),
            role,
        };
        let user = User {
            id: "u1".into(),
            username: Username::parse("alice").expect("name"),
            disabled: false,
            default_tenant: Some(tenant("acme")),
            tenants: vec![member("acme", Role::Owner), member("beta", Role::Member)],
            created_at: 0,
        };
        assert_eq!(user.choose_tenant(None).map(|m| m.role), Ok(Role::Owner));
        assert_eq!(
            user.choose_tenant(Some(&tenant("beta"))).map(|m| m.role),
            Ok(Role::Member)
        );
        assert_eq!(
            user.choose_tenant(Some(&tenant("gamma")))
                .map(|m| m.id.clone()),
            Err(TenantRefusal::NotAMember(tenant("gamma")))
        );
        let homeless = User {
            default_tenant: None,
            tenants: Vec::new(),
            ..user
        };
        assert_eq!(
            homeless.choose_tenant(None).map(|m| m.id.clone()),
            Err(TenantRefusal::NoTenant)
        );
    }

    #[test]
    fn usernames_are_case_insensitive_and_visible() {
        assert_eq!(
            Username::parse("Alice@Example.COM")
                .map(|u| u.0)
                .ok()
                .as_deref(),
            Some("alice@example.com")
        );
        for bad in ["", "a b", "tab\there", "nul\0", &"x".repeat(129)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tenant_role_specs() {
        let (t, r) = parse_tenant_role("acme:owner").expect("valid");
        assert_eq!((t.as_str(), r), ("acme", Role::Owner));
        let (t, r) = parse_tenant_role("acme").expect("valid");
        assert_eq!((t.as_str(), r), ("acme", Role::Member));
        assert!(parse_tenant_role("acme:boss").is_err());
        assert!(parse_tenant_role("Acme:owner").is_err());
    }
}
