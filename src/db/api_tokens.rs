use super::dsl::*;

use super::schema::{api_tokens, users};
use super::{from_json_list, run, Conn};
use crate::error::Error;
use crate::tenants::TenantId;
use crate::tokens::api::{ApiToken, Kind, Owner};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_tokens)]
pub struct ApiTokenRow {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub user_id: Option<String>,
    pub created_by: String,
    pub name: String,
    pub roles: String,
    pub digest: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

fn view(row: ApiTokenRow, username: Option<String>) -> ApiToken {
    ApiToken {
        kind: Kind::parse(&row.kind).unwrap_or(Kind::System),
        owner: row
            .user_id
            .clone()
            .zip(username)
            .map(|(id, username)| Owner { id, username }),
        roles: from_json_list(&row.roles)
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect(),
        tenant: TenantId::from_db(row.tenant_id),
        id: row.id,
        name: row.name,
        created_at: row.created_at,
        last_used_at: row.last_used_at,
        expires_at: row.expires_at,
    }
}

pub async fn insert(conn: &mut Conn, row: &ApiTokenRow) -> Result<(), Error> {
    run!(conn, |c| diesel::insert_into(api_tokens::table)
        .values(row)
        .execute(c))?;
    Ok(())
}

pub async fn find(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<Option<ApiToken>, Error> {
    let found = run!(conn, |c| api_tokens::table
        .left_join(users::table)
        .filter(api_tokens::tenant_id.eq(tenant.as_str()))
        .filter(api_tokens::id.eq(id))
        .select((ApiTokenRow::as_select(), users::username.nullable()))
        .get_result::<(ApiTokenRow, Option<String>)>(c))
    .optional()?;
    Ok(found.map(|(row, username)| view(row, username)))
}

pub async fn list(conn: &mut Conn, tenant: &TenantId) -> Result<Vec<ApiToken>, Error> {
    let rows = run!(conn, |c| api_tokens::table
        .left_join(users::table)
        .filter(api_tokens::tenant_id.eq(tenant.as_str()))
        .order((api_tokens::kind, api_tokens::created_at, api_tokens::id))
        .select((ApiTokenRow::as_select(), users::username.nullable()))
        .load::<(ApiTokenRow, Option<String>)>(c))?;
    Ok(rows
        .into_iter()
        .map(|(row, username)| view(row, username))
        .collect())
}

pub async fn by_digest(conn: &mut Conn, digest: &str) -> Result<Option<ApiTokenRow>, Error> {
    Ok(run!(conn, |c| api_tokens::table
        .filter(api_tokens::digest.eq(digest))
        .select(ApiTokenRow::as_select())
        .get_result(c))
    .optional()?)
}

// Statements on one token name its tenant too: defence in depth against an id from
// another tenant reaching them.

pub async fn by_id(
    conn: &mut Conn,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<ApiTokenRow>, Error> {
    Ok(run!(conn, |c| api_tokens::table
        .find(id)
        .filter(api_tokens::tenant_id.eq(tenant.as_str()))
        .select(ApiTokenRow::as_select())
        .get_result(c))
    .optional()?)
}

pub async fn set_digest(
    conn: &mut Conn,
    tenant: &TenantId,
    id: &str,
    digest: &str,
) -> Result<(), Error> {
    run!(conn, |c| diesel::update(
        api_tokens::table
            .find(id)
            .filter(api_tokens::tenant_id.eq(tenant.as_str())),
    )
    .set(api_tokens::digest.eq(digest))
    .execute(c))?;
    Ok(())
}

pub async fn delete(conn: &mut Conn, tenant: &TenantId, id: &str) -> Result<(), Error> {
    run!(conn, |c| diesel::delete(
        api_tokens::table
            .find(id)
            .filter(api_tokens::tenant_id.eq(tenant.as_str())),
    )
    .execute(c))?;
    Ok(())
}

/// Records a use, unless one was recorded since `not_since` (a concurrent request did it).
pub async fn touch(
    conn: &mut Conn,
    tenant: &TenantId,
    id: &str,
    now: i64,
    not_since: i64,
) -> Result<(), Error> {
    run!(conn, |c| diesel::update(
        api_tokens::table
            .find(id)
            .filter(api_tokens::tenant_id.eq(tenant.as_str()))
            .filter(
                api_tokens::last_used_at
                    .is_null()
                    .or(api_tokens::last_used_at.le(not_since)),
            ),
    )
    .set(api_tokens::last_used_at.eq(now))
    .execute(c))?;
    Ok(())
}
