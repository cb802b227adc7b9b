//! Tenants ("VideoManagers"): the unit every token is scoped to.

pub mod url_secret;

use std::fmt;

use serde::Serialize;

use crate::db::{self, Conn};
use crate::error::Error;

/// A tenant id, validated once at the edge: a short slug `[a-z0-9][a-z0-9-]{0,62}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let bytes = raw.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= 63
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Error::Invalid(format!(
                "invalid tenant id {raw:?}: use 1 to 63 lowercase letters, digits and dashes, \
                 starting with a letter or digit"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For ids read back from the database, which were validated when written.
    pub(crate) fn from_db(raw: String) -> Self {
        Self(raw)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: i64,
}

/// Display names of tenants, users' clients: visible text, so no control characters.
pub fn validate_display_name(what: &str, name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::Invalid(format!("the {what} name is empty")));
    }
    if name.chars().count() > 200 {
        return Err(Error::Invalid(format!(
            "the {what} name is longer than 200 characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "the {what} name contains control characters"
        )));
    }
    Ok(name.to_owned())
}

pub async fn create(conn: &mut Conn, id: &str, name: &str, now: i64) -> Result<Tenant, Error> {
    let tenant = Tenant {
        id: TenantId::parse(id)?,
        name: validate_display_name("tenant", name)?,
        created_at: now,
    };
    db::tenants::insert(conn, &tenant).await?;
    Ok(tenant)
}

pub async fn list(conn: &mut Conn) -> Result<Vec<Tenant>, Error> {
    db::tenants::list(conn).await
}

pub async fn get(conn: &mut Conn, id: &TenantId) -> Result<Tenant, Error> {
    db::tenants::find(conn, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("unknown tenant {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_short_slugs() {
        for ok in ["a", "acme", "acme-2", "9lives", &"a".repeat(63)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-acme", "Acme", "ac me", "acme_2", "ä", &"a".repeat(64)] {
            assert!(
                matches!(TenantId::parse(bad), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(
            validate_display_name("tenant", "  Acme  ").ok().as_deref(),
            Some("Acme")
        );
        assert!(validate_display_name("tenant", "   ").is_err());
        assert!(validate_display_name("tenant", "a\u{7}b").is_err());
        assert!(validate_display_name("tenant", &"x".repeat(201)).is_err());
    }
}
