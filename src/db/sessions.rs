use diesel::prelude::*;

use super::schema::{authorization_codes, consents, sessions};
use super::{is_unique_violation, DbConnection};
use crate::error::Error;

pub fn insert(
    conn: &mut DbConnection,
    digest: &str,
    user_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), Error> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::digest.eq(digest),
            sessions::user_id.eq(user_id),
            sessions::created_at.eq(now),
            sessions::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn live_user(conn: &mut DbConnection, digest: &str, now: i64) -> Result<Option<String>, Error> {
    Ok(sessions::table
        .filter(sessions::digest.eq(digest))
        .filter(sessions::expires_at.gt(now))
        .select(sessions::user_id)
        .get_result(conn)
        .optional()?)
}

pub fn delete(conn: &mut DbConnection, digest: &str) -> Result<(), Error> {
    diesel::delete(sessions::table.filter(sessions::digest.eq(digest))).execute(conn)?;
    Ok(())
}

pub fn consent_exists(
    conn: &mut DbConnection,
    user_id: &str,
    client_id: &str,
    tenant_id: &str,
    scope: &str,
) -> Result<bool, Error> {
    use diesel::dsl::{exists, select};
    Ok(select(exists(
        consents::table
            .filter(consents::user_id.eq(user_id))
            .filter(consents::client_id.eq(client_id))
            .filter(consents::tenant_id.eq(tenant_id))
            .filter(consents::scope.eq(scope)),
    ))
    .get_result(conn)?)
}

pub fn remember_consent(
    conn: &mut DbConnection,
    user_id: &str,
    client_id: &str,
    tenant_id: &str,
    scope: &str,
    now: i64,
) -> Result<(), Error> {
    let inserted = diesel::insert_into(consents::table)
        .values((
            consents::user_id.eq(user_id),
            consents::client_id.eq(client_id),
            consents::tenant_id.eq(tenant_id),
            consents::scope.eq(scope),
            consents::created_at.eq(now),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(()),
        // Given twice (two tabs): still given.
        Err(e) if is_unique_violation(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = authorization_codes)]
pub struct CodeRow {
    pub digest: String,
    pub client_id: String,
    pub user_id: String,
    pub tenant_id: String,
    pub redirect_uri: String,
    pub redirect_uri_given: bool,
    pub scope: String,
    pub code_challenge: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub family_id: Option<String>,
}

pub fn insert_code(conn: &mut DbConnection, row: &CodeRow) -> Result<(), Error> {
    diesel::insert_into(authorization_codes::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find_code(conn: &mut DbConnection, digest: &str) -> Result<Option<CodeRow>, Error> {
    Ok(authorization_codes::table
        .filter(authorization_codes::digest.eq(digest))
        .select(CodeRow::as_select())
        .get_result(conn)
        .optional()?)
}

/// The code's single use: one conditional write that also records the family it produced.
pub fn consume_code(
    conn: &mut DbConnection,
    digest: &str,
    family_id: &str,
    now: i64,
) -> Result<bool, Error> {
    let changed = diesel::update(
        authorization_codes::table
            .filter(authorization_codes::digest.eq(digest))
            .filter(authorization_codes::used_at.is_null()),
    )
    .set((
        authorization_codes::used_at.eq(now),
        authorization_codes::family_id.eq(family_id),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Expired sessions and codes. Used codes are kept until they expire, so that a second use
/// inside their lifetime is still recognised and revokes what the first produced.
pub fn purge(conn: &mut DbConnection, now: i64) -> Result<(usize, usize), Error> {
    let sessions =
        diesel::delete(sessions::table.filter(sessions::expires_at.le(now))).execute(conn)?;
    let codes =
        diesel::delete(authorization_codes::table.filter(authorization_codes::expires_at.le(now)))
            .execute(conn)?;
    Ok((sessions, codes))
}
