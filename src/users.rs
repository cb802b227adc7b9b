//! Users and their memberships in tenants.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::db::{self, write_transaction, DbConnection};
use crate::error::Error;
use crate::passwords;
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

pub fn create(
    conn: &mut DbConnection,
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
    let password_hash = passwords::hash(password)?;
    let id = uuid::Uuid::new_v4().to_string();
    write_transaction(conn, |conn| {
        for (tenant, _) in tenants {
            crate::tenants::get(conn, tenant)?;
        }
        let default = tenants.first().map(|(t, _)| t);
        db::users::insert(conn, &id, &username, &password_hash, default, now)?;
        for (tenant, role) in tenants {
            db::users::insert_membership(conn, &id, tenant, *role, now)?;
        }
        find_in(conn, &username)
    })
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<User>, Error> {
    db::users::list(conn)
}

pub fn find(conn: &mut DbConnection, username: &str) -> Result<User, Error> {
    find_in(conn, &Username::parse(username)?)
}

fn find_in(conn: &mut DbConnection, username: &Username) -> Result<User, Error> {
    db::users::find(conn, username)?
        .ok_or_else(|| Error::NotFound(format!("unknown user {username}")))
}

/// The user with this username and password, if both match and the user is not disabled.
/// Unknown users cost the same time as known ones (a dummy verification).
pub fn check_password(
    conn: &mut DbConnection,
    username: &str,
    password: &str,
) -> Result<Option<User>, Error> {
    let Ok(username) = Username::parse(username) else {
        passwords::verify_dummy(password);
        return Ok(None);
    };
    match db::users::password_hash(conn, &username)? {
        Some(hash) => {
            let matches = passwords::verify(password, &hash);
            let user = find_in(conn, &username)?;
            Ok((matches && !user.disabled).then_some(user))
        }
        None => {
            passwords::verify_dummy(password);
            Ok(None)
        }
    }
}

pub fn add_tenant(
    conn: &mut DbConnection,
    username: &str,
    tenant: &str,
    role: Role,
    now: i64,
) -> Result<User, Error> {
    let username = Username::parse(username)?;
    let tenant = TenantId::parse(tenant)?;
    write_transaction(conn, |conn| {
        let user = find_in(conn, &username)?;
        crate::tenants::get(conn, &tenant)?;
        if let Some(existing) = user.tenants.iter().find(|m| m.id == tenant) {
            return Err(Error::Conflict(format!(
                "user {username} is already a member of tenant {tenant} (role {})",
                existing.role
            )));
        }
        db::users::insert_membership(conn, &user.id, &tenant, role, now)?;
        if user.default_tenant.is_none() {
            db::users::set_default_tenant(conn, &user.id, Some(&tenant), now)?;
        }
        find_in(conn, &username)
    })
}

/// Leaving the default tenant makes the oldest remaining membership the default.
pub fn remove_tenant(
    conn: &mut DbConnection,
    username: &str,
    tenant: &str,
    now: i64,
) -> Result<User, Error> {
    let username = Username::parse(username)?;
    let tenant = TenantId::parse(tenant)?;
    write_transaction(conn, |conn| {
        let user = find_in(conn, &username)?;
        if !user.tenants.iter().any(|m| m.id == tenant) {
            return Err(Error::NotFound(format!(
                "user {username} is not a member of tenant {tenant}"
            )));
        }
        db::users::delete_membership(conn, &user.id, &tenant)?;
        if user.default_tenant.as_ref() == Some(&tenant) {
            let next = db::users::oldest_membership(conn, &user.id)?;
            db::users::set_default_tenant(conn, &user.id, next.as_ref(), now)?;
        }
        find_in(conn, &username)
    })
}

pub fn set_disabled(
    conn: &mut DbConnection,
    username: &str,
    disabled: bool,
    now: i64,
) -> Result<User, Error> {
    let username = Username::parse(username)?;
    write_transaction(conn, |conn| {
        let user = find_in(conn, &username)?;
        db::users::set_disabled(conn, &user.id, disabled, now)?;
        find_in(conn, &username)
    })
}

pub fn set_password(
    conn: &mut DbConnection,
    username: &str,
    password: &str,
    now: i64,
) -> Result<User, Error> {
    let username = Username::parse(username)?;
    let password_hash = passwords::hash(password)?;
    write_transaction(conn, |conn| {
        let user = find_in(conn, &username)?;
        db::users::set_password_hash(conn, &user.id, &password_hash, now)?;
        find_in(conn, &username)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
