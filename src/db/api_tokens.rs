use diesel::prelude::*;

use super::schema::{api_tokens, users};
use super::{from_json_list, DbConnection};
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

pub fn insert(conn: &mut DbConnection, row: &ApiTokenRow) -> Result<(), Error> {
    diesel::insert_into(api_tokens::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn find(
    conn: &mut DbConnection,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<ApiToken>, Error> {
    let found = api_tokens::table
        .left_join(users::table)
        .filter(api_tokens::tenant_id.eq(tenant.as_str()))
        .filter(api_tokens::id.eq(id))
        .select((ApiTokenRow::as_select(), users::username.nullable()))
        .get_result::<(ApiTokenRow, Option<String>)>(conn)
        .optional()?;
    Ok(found.map(|(row, username)| view(row, username)))
}

pub fn list(conn: &mut DbConnection, tenant: &TenantId) -> Result<Vec<ApiToken>, Error> {
    let rows = api_tokens::table
        .left_join(users::table)
        .filter(api_tokens::tenant_id.eq(tenant.as_str()))
        .order((api_tokens::kind, api_tokens::created_at, api_tokens::id))
        .select((ApiTokenRow::as_select(), users::username.nullable()))
        .load::<(ApiTokenRow, Option<String>)>(conn)?;
    Ok(rows
        .into_iter()
        .map(|(row, username)| view(row, username))
        .collect())
}

pub fn by_digest(conn: &mut DbConnection, digest: &str) -> Result<Option<ApiTokenRow>, Error> {
    Ok(api_tokens::table
        .filter(api_tokens::digest.eq(digest))
        .select(ApiTokenRow::as_select())
        .get_result(conn)
        .optional()?)
}

// Statements on one token name its tenant too: defence in depth against an id from
// another tenant reaching them.

pub fn by_id(
    conn: &mut DbConnection,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<ApiTokenRow>, Error> {
    Ok(api_tokens::table
        .find(id)
        .filter(api_tokens::tenant_id.eq(tenant.as_str()))
        .select(ApiTokenRow::as_select())
        .get_result(conn)
        .optional()?)
}

pub fn set_digest(
    conn: &mut DbConnection,
    tenant: &TenantId,
    id: &str,
    digest: &str,
) -> Result<(), Error> {
    diesel::update(
        api_tokens::table
            .find(id)
            .filter(api_tokens::tenant_id.eq(tenant.as_str())),
    )
    .set(api_tokens::digest.eq(digest))
    .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut DbConnection, tenant: &TenantId, id: &str) -> Result<(), Error> {
    diesel::delete(
        api_tokens::table
            .find(id)
            .filter(api_tokens::tenant_id.eq(tenant.as_str())),
    )
    .execute(conn)?;
    Ok(())
}

/// Records a use, unless one was recorded since `not_since` (a concurrent request did it).
pub fn touch(
    conn: &mut DbConnection,
    tenant: &TenantId,
    id: &str,
    now: i64,
    not_since: i64,
) -> Result<(), Error> {
    diesel::update(
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
    .execute(conn)?;
    Ok(())
}
