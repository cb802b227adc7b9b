//! Authorization codes: single use, kept until they expire so that a second use is recognised.

use super::dsl::*;

use super::schema::authorization_codes;
use super::{run, Conn};
use crate::error::Error;

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

pub async fn insert(conn: &mut Conn, row: &CodeRow) -> Result<(), Error> {
    run!(conn, |c| diesel::insert_into(authorization_codes::table)
        .values(row)
        .execute(c))?;
    Ok(())
}

pub async fn find(conn: &mut Conn, digest: &str) -> Result<Option<CodeRow>, Error> {
    Ok(run!(conn, |c| authorization_codes::table
        .filter(authorization_codes::digest.eq(digest))
        .select(CodeRow::as_select())
        .get_result(c))
    .optional()?)
}

/// The code's single use: one conditional write that also records the family it produced.
pub async fn consume(
    conn: &mut Conn,
    digest: &str,
    family_id: &str,
    now: i64,
) -> Result<bool, Error> {
    let changed = run!(conn, |c| diesel::update(
        authorization_codes::table
            .filter(authorization_codes::digest.eq(digest))
            .filter(authorization_codes::used_at.is_null()),
    )
    .set((
        authorization_codes::used_at.eq(now),
        authorization_codes::family_id.eq(family_id),
    ))
    .execute(c))?;
    Ok(changed == 1)
}

/// Expired codes. Used codes are kept until they expire, so that a second use inside their
/// lifetime is still recognised and revokes what the first produced.
pub async fn purge(conn: &mut Conn, now: i64) -> Result<usize, Error> {
    Ok(run!(conn, |c| diesel::delete(
        authorization_codes::table.filter(authorization_codes::expires_at.le(now))
    )
    .execute(c))?)
}
