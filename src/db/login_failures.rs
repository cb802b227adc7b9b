//! Failed sign-ins per (lower-case) username and source address, for the lockout window.

use super::dsl::*;

use super::schema::login_failures;
use super::{run, Conn};
use crate::error::Error;

/// The username's failed sign-ins after `since`, oldest first, as (source, failed_at).
pub async fn recent_failures(
    conn: &mut Conn,
    username: &str,
    since: i64,
) -> Result<Vec<(String, i64)>, Error> {
    Ok(run!(conn, |c| login_failures::table
        .filter(login_failures::username.eq(username))
        .filter(login_failures::failed_at.gt(since))
        .order(login_failures::failed_at.asc())
        .select((login_failures::source, login_failures::failed_at))
        .load(c))?)
}

pub async fn record_failure(
    conn: &mut Conn,
    id: &str,
    username: &str,
    source: &str,
    now: i64,
) -> Result<(), Error> {
    run!(conn, |c| diesel::insert_into(login_failures::table)
        .values((
            login_failures::id.eq(id),
            login_failures::username.eq(username),
            login_failures::source.eq(source),
            login_failures::failed_at.eq(now),
        ))
        .execute(c))?;
    Ok(())
}

pub async fn clear_failures(conn: &mut Conn, username: &str, source: &str) -> Result<(), Error> {
    run!(conn, |c| diesel::delete(
        login_failures::table
            .filter(login_failures::username.eq(username))
            .filter(login_failures::source.eq(source)),
    )
    .execute(c))?;
    Ok(())
}

/// Forgets failures at or before `until`: they no longer count towards any lockout.
pub async fn purge(conn: &mut Conn, until: i64) -> Result<usize, Error> {
    Ok(run!(conn, |c| diesel::delete(
        login_failures::table.filter(login_failures::failed_at.le(until))
    )
    .execute(c))?)
}
