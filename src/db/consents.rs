//! Consents a user gave a client, per tenant and scope set.

use super::dsl::*;

use super::schema::consents;
use super::{is_unique_violation, run, Conn};
use crate::error::Error;

pub async fn exists(
    conn: &mut Conn,
    user_id: &str,
    client_id: &str,
    tenant_id: &str,
    scope: &str,
) -> Result<bool, Error> {
    use diesel::dsl::{exists, select};
    Ok(run!(conn, |c| select(exists(
        consents::table
            .filter(consents::user_id.eq(user_id))
            .filter(consents::client_id.eq(client_id))
            .filter(consents::tenant_id.eq(tenant_id))
            .filter(consents::scope.eq(scope)),
    ))
    .get_result(c))?)
}

pub async fn remember(
    conn: &mut Conn,
    user_id: &str,
    client_id: &str,
    tenant_id: &str,
    scope: &str,
    now: i64,
) -> Result<(), Error> {
    let inserted = run!(conn, |c| diesel::insert_into(consents::table)
        .values((
            consents::user_id.eq(user_id),
            consents::client_id.eq(client_id),
            consents::tenant_id.eq(tenant_id),
            consents::scope.eq(scope),
            consents::created_at.eq(now),
        ))
        .execute(c));
    match inserted {
        Ok(_) => Ok(()),
        // Given twice (two tabs): still given.
        Err(e) if is_unique_violation(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
