use diesel::prelude::*;

use super::schema::tenants;
use super::{is_unique_violation, DbConnection};
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

pub fn insert(conn: &mut DbConnection, tenant: &Tenant) -> Result<(), Error> {
    let row = TenantRow {
        id: tenant.id.as_str().to_owned(),
        name: tenant.name.clone(),
        created_at: tenant.created_at,
    };
    diesel::insert_into(tenants::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::Conflict(format!("tenant {} already exists", tenant.id))
            } else {
                e.into()
            }
        })?;
    Ok(())
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<Tenant>, Error> {
    let rows = tenants::table
        .select(TenantRow::as_select())
        .order(tenants::id)
        .load(conn)?;
    Ok(rows.into_iter().map(Tenant::from).collect())
}

pub fn find(conn: &mut DbConnection, id: &TenantId) -> Result<Option<Tenant>, Error> {
    let row = tenants::table
        .find(id.as_str())
        .select(TenantRow::as_select())
        .get_result(conn)
        .optional()?;
    Ok(row.map(Tenant::from))
}
