//! Browser sessions, by the digest of their cookie value.

use super::dsl::*;

use super::schema::sessions;
use super::{run, Conn};
use crate::error::Error;

pub async fn insert(
    conn: &mut Conn,
    digest: &str,
    user_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), Error> {
    run!(conn, |c| diesel::insert_into(sessions::table)
        .values((
            sessions::digest.eq(digest),
            sessions::user_id.eq(user_id),
            sessions::created_at.eq(now),
            sessions::expires_at.eq(expires_at),
        ))
        .execute(c))?;
    Ok(())
}

pub async fn live_user(conn: &mut Conn, digest: &str, now: i64) -> Result<Option<String>, Error> {
    Ok(run!(conn, |c| sessions::table
        .filter(sessions::digest.eq(digest))
        .filter(sessions::expires_at.gt(now))
        .select(sessions::user_id)
        .get_result(c))
    .optional()?)
}

pub async fn delete(conn: &mut Conn, digest: &str) -> Result<(), Error> {
    run!(conn, |c| diesel::delete(
        sessions::table.filter(sessions::digest.eq(digest))
    )
    .execute(c))?;
    Ok(())
}

/// Expired sessions.
pub async fn purge(conn: &mut Conn, now: i64) -> Result<usize, Error> {
    Ok(run!(conn, |c| diesel::delete(
        sessions::table.filter(sessions::expires_at.le(now))
    )
    .execute(c))?)
}
