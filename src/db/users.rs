use std::collections::HashMap;

use super::dsl::*;

use super::schema::{memberships, tenants, users};
use super::{is_unique_violation, run, Conn};
use crate::error::Error;
use crate::tenants::TenantId;
use crate::users::{Membership, Role, User, Username};

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
pub(super) struct UserRow {
    id: String,
    username: String,
    disabled: bool,
    default_tenant_id: Option<String>,
    created_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
struct NewUserRow<'a> {
    id: &'a str,
    username: &'a str,
    password_hash: &'a str,
    disabled: bool,
    default_tenant_id: Option<&'a str>,
    created_at: i64,
    updated_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = memberships)]
struct MembershipRow<'a> {
    user_id: &'a str,
    tenant_id: &'a str,
    role: &'a str,
    created_at: i64,
}

pub async fn insert(
    conn: &mut Conn,
    id: &str,
    username: &Username,
    password_hash: &str,
    default_tenant: Option<&TenantId>,
    now: i64,
) -> Result<(), Error> {
    let row = NewUserRow {
        id,
        username: username.as_str(),
        password_hash,
        disabled: false,
        default_tenant_id: default_tenant.map(TenantId::as_str),
        created_at: now,
        updated_at: now,
    };
    run!(conn, |c| diesel::insert_into(users::table)
        .values(&row)
        .execute(c))
    .map_err(|e| {
        if is_unique_violation(&e) {
            Error::Conflict(format!("user {username} already exists"))
        } else {
            e.into()
        }
    })?;
    Ok(())
}

pub async fn insert_membership(
    conn: &mut Conn,
    user_id: &str,
    tenant: &TenantId,
    role: Role,
    now: i64,
) -> Result<(), Error> {
    let row = MembershipRow {
        user_id,
        tenant_id: tenant.as_str(),
        role: role.as_str(),
        created_at: now,
    };
    run!(conn, |c| diesel::insert_into(memberships::table)
        .values(&row)
        .execute(c))?;
    Ok(())
}

pub async fn delete_membership(
    conn: &mut Conn,
    user_id: &str,
    tenant: &TenantId,
) -> Result<(), Error> {
    run!(conn, |c| diesel::delete(
        memberships::table.find((user_id, tenant.as_str()))
    )
    .execute(c))?;
    Ok(())
}

pub async fn oldest_membership(conn: &mut Conn, user_id: &str) -> Result<Option<TenantId>, Error> {
    let id = run!(conn, |c| memberships::table
        .filter(memberships::user_id.eq(user_id))
        .order((memberships::created_at, memberships::tenant_id))
        .select(memberships::tenant_id)
        .first::<String>(c))
    .optional()?;
    Ok(id.map(TenantId::from_db))
}

pub async fn set_default_tenant(
    conn: &mut Conn,
    user_id: &str,
    tenant: Option<&TenantId>,
    now: i64,
) -> Result<(), Error> {
    run!(conn, |c| diesel::update(users::table.find(user_id))
        .set((
            users::default_tenant_id.eq(tenant.map(TenantId::as_str)),
            users::updated_at.eq(now),
        ))
        .execute(c))?;
    Ok(())
}

pub async fn set_disabled(
    conn: &mut Conn,
    user_id: &str,
    disabled: bool,
    now: i64,
) -> Result<(), Error> {
    run!(conn, |c| diesel::update(users::table.find(user_id))
        .set((users::disabled.eq(disabled), users::updated_at.eq(now)))
        .execute(c))?;
    Ok(())
}

pub async fn set_password_hash(
    conn: &mut Conn,
    user_id: &str,
    hash: &str,
    now: i64,
) -> Result<(), Error> {
    run!(conn, |c| diesel::update(users::table.find(user_id))
        .set((users::password_hash.eq(hash), users::updated_at.eq(now)))
        .execute(c))?;
    Ok(())
}

pub async fn password_hash(conn: &mut Conn, username: &Username) -> Result<Option<String>, Error> {
    Ok(run!(conn, |c| users::table
        .filter(users::username.eq(username.as_str()))
        .select(users::password_hash)
        .get_result(c))
    .optional()?)
}

pub async fn find(conn: &mut Conn, username: &Username) -> Result<Option<User>, Error> {
    let id = run!(conn, |c| users::table
        .filter(users::username.eq(username.as_str()))
        .select(users::id)
        .get_result::<String>(c))
    .optional()?;
    match id {
        Some(id) => find_by_id(conn, &id).await,
        None => Ok(None),
    }
}

/// A membership's cells in a flat `LEFT JOIN` row (tenant id, tenant name, role): all present,
/// or none for a user without memberships. The joins are flat because SQLite materialised a
/// nested `LEFT JOIN (memberships JOIN tenants)` by scanning every membership.
pub(super) type MembershipCells = (Option<String>, Option<String>, Option<String>);

/// The user with its memberships in one statement (every grant needs both): one row per
/// membership, or a single row without one.
pub async fn find_by_id(conn: &mut Conn, id: &str) -> Result<Option<User>, Error> {
    let rows = run!(conn, |c| users::table
        .left_join(memberships::table.on(memberships::user_id.eq(users::id)))
        .left_join(tenants::table.on(tenants::id.eq(memberships::tenant_id)))
        .filter(users::id.eq(id))
        .order((memberships::created_at, memberships::tenant_id))
        .select((UserRow::as_select(), membership_cells()))
        .load::<(UserRow, MembershipCells)>(c))?;
    one_user(rows)
}

pub async fn list(conn: &mut Conn) -> Result<Vec<User>, Error> {
    let rows = run!(conn, |c| users::table
        .select(UserRow::as_select())
        .order(users::username)
        .load(c))?;
    assemble(conn, rows).await
}

/// Attaches memberships (with tenant names) to user rows in one query.
async fn assemble(conn: &mut Conn, rows: Vec<UserRow>) -> Result<Vec<User>, Error> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let found: Vec<(String, String, String, String)> = run!(conn, |c| memberships::table
        .inner_join(tenants::table)
        .filter(memberships::user_id.eq_any(&ids))
        .order((memberships::created_at, memberships::tenant_id))
        .select((
            memberships::user_id,
            memberships::tenant_id,
            tenants::name,
            memberships::role,
        ))
        .load(c))?;
    let mut by_user: HashMap<String, Vec<Membership>> = HashMap::new();
    for (user_id, tenant_id, name, role) in found {
        by_user
            .entry(user_id)
            .or_default()
            .push(membership(tenant_id, name, role)?);
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let tenants = by_user.remove(&row.id).unwrap_or_default();
            user(row, tenants)
        })
        .collect())
}

/// The columns of `MembershipCells`, for a select clause.
pub(super) fn membership_cells() -> (
    diesel::dsl::Nullable<memberships::tenant_id>,
    diesel::dsl::Nullable<tenants::name>,
    diesel::dsl::Nullable<memberships::role>,
) {
    (
        memberships::tenant_id.nullable(),
        tenants::name.nullable(),
        memberships::role.nullable(),
    )
}

/// One user from its flat join rows (the user's columns repeat on each).
pub(super) fn one_user(
    rows: impl IntoIterator<Item = (UserRow, MembershipCells)>,
) -> Result<Option<User>, Error> {
    let mut rows = rows.into_iter();
    let Some((row, first)) = rows.next() else {
        return Ok(None);
    };
    let tenants = std::iter::once(first)
        .chain(rows.map(|(_, cells)| cells))
        .filter_map(|(tenant_id, name, role)| Some((tenant_id?, name?, role?)))
        .map(|(tenant_id, name, role)| membership(tenant_id, name, role))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(user(row, tenants)))
}

fn membership(tenant_id: String, name: String, role: String) -> Result<Membership, Error> {
    let role = role
        .parse()
        .map_err(|_| Error::Internal(format!("stored role {role:?} is unknown")))?;
    Ok(Membership {
        id: TenantId::from_db(tenant_id),
        name,
        role,
    })
}

fn user(row: UserRow, tenants: Vec<Membership>) -> User {
    User {
        tenants: default_first(tenants, row.default_tenant_id.as_deref()),
        id: row.id,
        username: Username::from_db(row.username),
        disabled: row.disabled,
        default_tenant: row.default_tenant_id.map(TenantId::from_db),
        created_at: row.created_at,
    }
}

/// The default tenant leads the list; the others follow in the order they were joined.
fn default_first(mut list: Vec<Membership>, default: Option<&str>) -> Vec<Membership> {
    if let Some(pos) = list.iter().position(|m| Some(m.id.as_str()) == default) {
        let first = list.remove(pos);
        list.insert(0, first);
    }
    list
}
