//! Token families, refresh tokens and revoked access tokens (and the purge of every expired row).

use super::dsl::*;
use diesel::backend::Backend;
use diesel::dsl::{exists, not};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::Sqlite;

use super::schema::{
    memberships, refresh_tokens, revoked_access_tokens, tenants, token_families, users,
};
use super::users::{membership_cells, one_user, MembershipCells, UserRow};
use super::{is_unique_violation, run, Conn};
use crate::error::Error;
use crate::users::User;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = token_families)]
pub struct Family {
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    pub digest: String,
    pub family_id: String,
    pub tenant_id: String,
    pub scope: String,
    pub created_at: i64,
    pub idle_expires_at: i64,
    pub used_at: Option<i64>,
}

pub async fn insert_family(conn: &mut Conn, family: &Family) -> Result<(), Error> {
    run!(conn, |c| diesel::insert_into(token_families::table)
        .values(family)
        .execute(c))?;
    Ok(())
}

pub async fn insert_refresh(conn: &mut Conn, token: &RefreshToken) -> Result<(), Error> {
    let insert = diesel::insert_into(refresh_tokens::table).values(token);
    run!(conn, |c| insert.execute(c))?;
    Ok(())
}

/// A refresh token with its family.
pub async fn find_refresh(
    conn: &mut Conn,
    digest: &str,
) -> Result<Option<(RefreshToken, Family)>, Error> {
    Ok(run!(conn, |c| refresh_tokens::table
        .inner_join(token_families::table)
        .filter(refresh_tokens::digest.eq(digest))
        .select((RefreshToken::as_select(), Family::as_select()))
        .get_result(c))
    .optional()?)
}

/// A refresh token with its family and its user (with memberships), in one statement: a
/// refresh needs all three, and on PostgreSQL each statement is a round trip.
pub async fn find_refresh_with_user(
    conn: &mut Conn,
    digest: &str,
) -> Result<Option<(RefreshToken, Family, User)>, Error> {
    let rows = run!(conn, |c| refresh_tokens::table
        .inner_join(token_families::table.inner_join(users::table))
        .left_join(memberships::table.on(memberships::user_id.eq(users::id)))
        .left_join(tenants::table.on(tenants::id.eq(memberships::tenant_id)))
        .filter(refresh_tokens::digest.eq(digest))
        .order((memberships::created_at, memberships::tenant_id))
        .select((
            RefreshToken::as_select(),
            Family::as_select(),
            (UserRow::as_select(), membership_cells()),
        ))
        .load::<(RefreshToken, Family, (UserRow, MembershipCells))>(c))?;
    let mut rows = rows.into_iter();
    let Some((token, family, first)) = rows.next() else {
        return Ok(None);
    };
    let user = one_user(std::iter::once(first).chain(rows.map(|(_, _, user)| user)))?;
    Ok(user.map(|user| (token, family, user)))
}

pub async fn used_at(conn: &mut Conn, digest: &str) -> Result<Option<i64>, Error> {
    Ok(run!(conn, |c| refresh_tokens::table
        .filter(refresh_tokens::digest.eq(digest))
        .select(refresh_tokens::used_at)
        .get_result::<Option<i64>>(c))
    .optional()?
    .flatten())
}

/// Rotation: marks the presented token used if, and only if, nobody else did and its family is
/// not revoked, and stores its successor. True when this call consumed it; false changes
/// nothing.
///
/// Hand-written statements because diesel re-prepares every `UPDATE` it builds (it never caches
/// them), which was the largest single cost of a refresh on SQLite; on PostgreSQL both writes go
/// in one statement, one round trip and no explicit transaction.
pub async fn rotate_refresh(
    conn: &mut Conn,
    digest: &str,
    now: i64,
    next: &RefreshToken,
) -> Result<bool, Error> {
    let consume = Consume { digest, now };
    match conn {
        Conn::Sqlite(_) => {
            super::write_transaction(conn, async |conn| {
                let Conn::Sqlite(pooled) = &mut *conn else {
                    unreachable!("the connection does not change backend");
                };
                if diesel::RunQueryDsl::execute(consume, super::sqlite(pooled))? != 1 {
                    return Ok(false);
                }
                insert_refresh(conn, next).await?;
                Ok(true)
            })
            .await
        }
        Conn::Postgres(pooled) => {
            let statement = ConsumeAndInsert { consume, next };
            Ok(diesel_async::RunQueryDsl::execute(statement, &mut **pooled).await? == 1)
        }
    }
}

/// `UPDATE refresh_tokens SET used_at = now` for an unused token of a live family.
///
/// A correlated EXISTS, not `family_id IN (SELECT ...)`: SQLite materialised that list of every
/// live family on each rotation (a full scan; 4 req/s with a million rows).
struct Consume<'a> {
    digest: &'a str,
    now: i64,
}

impl<'a> Consume<'a> {
    fn walk<'b, DB>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()>
    where
        DB: Backend,
        i64: ToSql<BigInt, DB>,
        str: ToSql<Text, DB>,
    {
        out.push_sql("UPDATE refresh_tokens SET used_at = ");
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(" WHERE digest = ");
        out.push_bind_param::<Text, _>(self.digest)?;
        out.push_sql(
            " AND used_at IS NULL AND EXISTS (SELECT 1 FROM token_families \
             WHERE token_families.id = refresh_tokens.family_id \
             AND token_families.revoked_at IS NULL)",
        );
        Ok(())
    }
}

impl QueryId for Consume<'_> {
    type QueryId = Consume<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Sqlite> for Consume<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        self.walk(&mut out)
    }
}

impl<C> diesel::RunQueryDsl<C> for Consume<'_> {}

/// PostgreSQL: the consuming `UPDATE` and the successor's `INSERT` as one statement; the row is
/// inserted only when the update consumed the token.
struct ConsumeAndInsert<'a> {
    consume: Consume<'a>,
    next: &'a RefreshToken,
}

impl QueryId for ConsumeAndInsert<'_> {
    type QueryId = ConsumeAndInsert<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for ConsumeAndInsert<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH consumed AS (");
        self.consume.walk(&mut out)?;
        out.push_sql(
            " RETURNING family_id) INSERT INTO refresh_tokens \
             (digest, family_id, tenant_id, scope, created_at, idle_expires_at) SELECT ",
        );
        out.push_bind_param::<Text, _>(self.next.digest.as_str())?;
        out.push_sql(", family_id, ");
        out.push_bind_param::<Text, _>(self.next.tenant_id.as_str())?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(self.next.scope.as_str())?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.next.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&self.next.idle_expires_at)?;
        out.push_sql(" FROM consumed");
        Ok(())
    }
}

pub async fn revoke_family(conn: &mut Conn, family_id: &str, now: i64) -> Result<(), Error> {
    run!(conn, |c| diesel::update(
        token_families::table
            .filter(token_families::id.eq(family_id))
            .filter(token_families::revoked_at.is_null()),
    )
    .set(token_families::revoked_at.eq(now))
    .execute(c))?;
    Ok(())
}

/// The username behind an access token if everything it depends on still holds: its family is
/// not revoked, its jti was not revoked, the user is enabled and still a member of the tenant.
pub async fn access_token_username(
    conn: &mut Conn,
    family_id: &str,
    jti: &str,
    user_id: &str,
    tenant_id: &str,
) -> Result<Option<String>, Error> {
    let membership = memberships::table
        .filter(memberships::user_id.eq(user_id))
        .filter(memberships::tenant_id.eq(tenant_id));
    let revoked = revoked_access_tokens::table.filter(revoked_access_tokens::jti.eq(jti));
    let query = token_families::table
        .inner_join(users::table)
        .filter(token_families::id.eq(family_id))
        .filter(token_families::revoked_at.is_null())
        .filter(users::id.eq(user_id))
        .filter(users::disabled.eq(false))
        .filter(exists(membership))
        .filter(not(exists(revoked)))
        .select(users::username);
    Ok(run!(conn, |c| query.get_result(c)).optional()?)
}

pub async fn is_revoked(conn: &mut Conn, jti: &str) -> Result<bool, Error> {
    use diesel::dsl::select;
    Ok(run!(conn, |c| select(exists(
        revoked_access_tokens::table.filter(revoked_access_tokens::jti.eq(jti)),
    ))
    .get_result(c))?)
}

pub async fn revoke_access_token(conn: &mut Conn, jti: &str, expires_at: i64) -> Result<(), Error> {
    let insert = diesel::insert_into(revoked_access_tokens::table).values((
        revoked_access_tokens::jti.eq(jti),
        revoked_access_tokens::expires_at.eq(expires_at),
    ));
    match run!(conn, |c| insert.execute(c)) {
        Ok(_) => Ok(()),
        // Revoked twice is revoked.
        Err(e) if is_unique_violation(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// What `purge` deleted, by kind.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Purged {
    pub token_families: usize,
    pub refresh_tokens: usize,
    pub revoked_access_tokens: usize,
    pub login_failures: usize,
    pub signing_keys: usize,
    pub sessions: usize,
    pub authorization_codes: usize,
    pub stream_tokens: usize,
}

/// Deletes only what can no longer matter:
/// - families that are revoked (a missing family already means "inactive"), or whose refresh
///   lifetime ended longer ago than an access token lives;
/// - refresh tokens past their idle expiry (used or not: they fail either way);
/// - revoked access-token ids past the token's expiry; sign-in failures outside the window;
/// - stream tokens past their expiry (revoked or not: they fail either way);
/// - signing keys retired longer ago than an access token lives (and the signing-key recheck)
///   that signed no stream token still alive.
pub async fn purge(
    conn: &mut Conn,
    now: i64,
    access_ttl: i64,
    lockout_window: i64,
) -> Result<Purged, Error> {
    let mut purged = Purged::default();
    // Children first: PostgreSQL would cascade anyway, but SQLite cascades only with
    // foreign_keys on, and counting them separately keeps the report honest.
    let dead_families = token_families::table
        .filter(
            token_families::revoked_at
                .is_not_null()
                .or(token_families::expires_at.lt(now - access_ttl)),
        )
        .select(token_families::id);
    purged.refresh_tokens += run!(conn, |c| diesel::delete(
        refresh_tokens::table.filter(refresh_tokens::family_id.eq_any(dead_families)),
    )
    .execute(c))?;
    purged.token_families = run!(conn, |c| diesel::delete(
        token_families::table.filter(
            token_families::revoked_at
                .is_not_null()
                .or(token_families::expires_at.lt(now - access_ttl)),
        ),
    )
    .execute(c))?;
    purged.refresh_tokens += run!(conn, |c| diesel::delete(
        refresh_tokens::table.filter(refresh_tokens::idle_expires_at.lt(now))
    )
    .execute(c))?;
    purged.revoked_access_tokens = run!(conn, |c| diesel::delete(
        revoked_access_tokens::table.filter(revoked_access_tokens::expires_at.lt(now)),
    )
    .execute(c))?;
    purged.login_failures = super::login_failures::purge(conn, now - lockout_window).await?;
    purged.stream_tokens = super::stream_tokens::purge(conn, now).await?;
    purged.signing_keys = super::keys::purge(
        conn,
        now - access_ttl - crate::keys::SIGNING_KEY_RECHECK_SECS,
        now,
    )
    .await?;
    purged.sessions = super::sessions::purge(conn, now).await?;
    purged.authorization_codes = super::codes::purge(conn, now).await?;
    Ok(purged)
}
