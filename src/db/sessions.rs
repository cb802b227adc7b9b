//! Browser sessions, by the digest of their cookie value.

use diesel::prelude::*;

use super::schema::sessions;
use super::DbConnection;
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

/// Expired sessions.
pub fn purge(conn: &mut DbConnection, now: i64) -> Result<usize, Error> {
    Ok(diesel::delete(sessions::table.filter(sessions::expires_at.le(now))).execute(conn)?)
}
