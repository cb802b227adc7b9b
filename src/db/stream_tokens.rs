use super::dsl::*;

use super::schema::stream_tokens;
use super::{run, Conn};
use crate::error::Error;
use crate::tenants::TenantId;

/// What revocation needs to know about an issued stream token.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = stream_tokens)]
pub struct StreamTokenRow {
    pub jti: String,
    pub tenant_id: String,
    pub stream: String,
    pub kid: String,
    pub issued_by: String,
    pub issued_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

pub async fn insert(conn: &mut Conn, row: &StreamTokenRow) -> Result<(), Error> {
    run!(conn, |c| diesel::insert_into(stream_tokens::table)
        .values(row)
        .execute(c))?;
    Ok(())
}

/// Revokes one of the tenant's tokens (one conditional write; revoking twice changes nothing).
/// `false` when the tenant issued no token with this id.
pub async fn revoke(
    conn: &mut Conn,
    tenant: &TenantId,
    jti: &str,
    now: i64,
) -> Result<bool, Error> {
    let changed = run!(conn, |c| diesel::update(
        stream_tokens::table
            .filter(stream_tokens::tenant_id.eq(tenant.as_str()))
            .filter(stream_tokens::jti.eq(jti))
            .filter(stream_tokens::revoked_at.is_null())
    )
    .set(stream_tokens::revoked_at.eq(now))
    .execute(c))?;
    if changed == 1 {
        return Ok(true);
    }
    exists(conn, tenant, jti).await
}

async fn exists(conn: &mut Conn, tenant: &TenantId, jti: &str) -> Result<bool, Error> {
    let found = run!(conn, |c| stream_tokens::table
        .filter(stream_tokens::tenant_id.eq(tenant.as_str()))
        .filter(stream_tokens::jti.eq(jti))
        .select(stream_tokens::jti)
        .first::<String>(c))
    .optional()?;
    Ok(found.is_some())
}

/// Whether the tenant's token with this id was revoked. A token with no row (never issued by
/// this tenant, or purged after expiry) is not "revoked": its signature and expiry decide.
pub async fn is_revoked(conn: &mut Conn, tenant: &str, jti: &str) -> Result<bool, Error> {
    let revoked = run!(conn, |c| stream_tokens::table
        .filter(stream_tokens::jti.eq(jti))
        .filter(stream_tokens::tenant_id.eq(tenant))
        .select(stream_tokens::revoked_at)
        .first::<Option<i64>>(c))
    .optional()?;
    Ok(matches!(revoked, Some(Some(_))))
}

/// The ids of the tenant's revoked tokens that have not expired at `now`, sorted.
pub async fn revoked_ids(
    conn: &mut Conn,
    tenant: &TenantId,
    now: i64,
) -> Result<Vec<String>, Error> {
    Ok(run!(conn, |c| stream_tokens::table
        .filter(stream_tokens::tenant_id.eq(tenant.as_str()))
        .filter(stream_tokens::revoked_at.is_not_null())
        .filter(
            stream_tokens::expires_at
                .is_null()
                .or(stream_tokens::expires_at.gt(now))
        )
        .order(stream_tokens::jti)
        .select(stream_tokens::jti)
        .load(c))?)
}

/// Deletes tokens that expired before `now`: they fail on their own, revoked or not.
pub async fn purge(conn: &mut Conn, now: i64) -> Result<usize, Error> {
    Ok(run!(conn, |c| diesel::delete(
        stream_tokens::table.filter(stream_tokens::expires_at.le(now))
    )
    .execute(c))?)
}
