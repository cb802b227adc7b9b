use super::dsl::*;

use super::schema::tenants;
use super::{is_unique_violation, run, Conn};
use crate::error::Error;
use crate::tenants::{Tenant, TenantId};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants)]
struct TenantRow {
    id: String,
    name: String,
    created_at: i64,
}

impl From<TenantRow> for Tenant {
    fn from(row: TenantRow) -> Self {
        Tenant {
            id: TenantId::from_db(row.id),
            name: row.name,
            created_at: row.created_at,
        }
    }
}

pub async fn insert(conn: &mut Conn, tenant: &Tenant) -> Result<(), Error> {
    let row = TenantRow {
        id: tenant.id.as_str().to_owned(),
        name: tenant.name.clone(),
        created_at: tenant.created_at,
    };
    run!(conn, |c| diesel::insert_into(tenants::table)
        .values(&row)
        .execute(c))
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::Conflict(format!("tenant {} already exists", tenant.id))
        } else {
            e.into()
        }
    })?;
    Ok(())
}

pub async fn list(conn: &mut Conn) -> Result<Vec<Tenant>, Error> {
    let rows = run!(conn, |c| tenants::table
        .select(TenantRow::as_select())
        .order(tenants::id)
        .load(c))?;
    Ok(rows.into_iter().map(Tenant::from).collect())
}

pub async fn find(conn: &mut Conn, id: &TenantId) -> Result<Option<Tenant>, Error> {
    let row = run!(conn, |c| tenants::table
        .find(id.as_str())
        .select(TenantRow::as_select())
        .get_result(c))
    .optional()?;
    Ok(row.map(Tenant::from))
}

/// The stored form of the tenant's URL secret: `None` for an unknown tenant, `Some(None)` for a
/// tenant without one.
pub async fn url_secret(conn: &mut Conn, id: &TenantId) -> Result<Option<Option<String>>, Error> {
    Ok(run!(conn, |c| tenants::table
        .find(id.as_str())
        .select(tenants::url_secret)
        .get_result(c))
    .optional()?)
}

/// Replaces the tenant's URL secret with `stored` (already in its stored form); false when no
/// such tenant exists.
pub async fn set_url_secret(
    conn: &mut Conn,
    id: &TenantId,
    stored: &str,
    now: i64,
) -> Result<bool, Error> {
    let changed = run!(conn, |c| diesel::update(tenants::table.find(id.as_str()))
        .set((
            tenants::url_secret.eq(Some(stored)),
            tenants::url_secret_set_at.eq(Some(now)),
        ))
        .execute(c))?;
    Ok(changed == 1)
}
