//! Failed sign-ins per (lower-case) username and source address, for the lockout window.

use diesel::prelude::*;

use super::schema::login_failures;
use super::DbConnection;
use crate::error::Error;

/// The username's failed sign-ins after `since`, oldest first, as (source, failed_at).
pub fn recent_failures(
    conn: &mut DbConnection,
    username: &str,
    since: i64,
) -> Result<Vec<(String, i64)>, Error> {
    Ok(login_failures::table
        .filter(login_failures::username.eq(username))
        .filter(login_failures::failed_at.gt(since))
        .order(login_failures::failed_at.asc())
        .select((login_failures::source, login_failures::failed_at))
        .load(conn)?)
}

pub fn record_failure(
    conn: &mut DbConnection,
    id: &str,
    username: &str,
    source: &str,
    now: i64,
) -> Result<(), Error> {
    diesel::insert_into(login_failures::table)
        .values((
            login_failures::id.eq(id),
            login_failures::username.eq(username),
            login_failures::source.eq(source),
            login_failures::failed_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn clear_failures(conn: &mut DbConnection, username: &str, source: &str) -> Result<(), Error> {
    diesel::delete(
        login_failures::table
            .filter(login_failures::username.eq(username))
            .filter(login_failures::source.eq(source)),
    )
    .execute(conn)?;
    Ok(())
}

/// Forgets failures at or before `until`: they no longer count towards any lockout.
pub fn purge(conn: &mut DbConnection, until: i64) -> Result<usize, Error> {
    Ok(
        diesel::delete(login_failures::table.filter(login_failures::failed_at.le(until)))
            .execute(conn)?,
    )
}
