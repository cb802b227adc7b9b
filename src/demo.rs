//! `keyframe serve --demo`: something to try at once on an empty database.

use crate::clients::{self, NewClient};
use crate::db::{self, write_transaction, Conn};
use crate::error::Error;
use crate::secrets::PlainSecret;
use crate::users::Role;
use crate::{tenants, users};

pub const TENANT: &str = "demo";
pub const USERNAME: &str = "demo";

/// Credentials shown once at start.
#[derive(Debug)]
pub struct DemoSetup {
    pub password: PlainSecret,
    pub client_id: String,
    pub client_secret: PlainSecret,
}

/// Creates tenant `demo`, user `demo` (random password, owner) and a confidential client allowed
/// the password and refresh grants, in one transaction. `None` when the database is not empty.
pub async fn bootstrap(conn: &mut Conn, now: i64) -> Result<Option<DemoSetup>, Error> {
    write_transaction(conn, async |conn| {
        if !db::is_empty(conn).await? {
            return Ok(None);
        }
        let tenant = tenants::create(conn, TENANT, "Demo VideoManager", now).await?;
        let password = PlainSecret::generate("demo-");
        users::create(
            conn,
            USERNAME,
            password.expose(),
            &[(tenant.id, Role::Owner)],
            now,
        )
        .await?;
        let (client, secret) = clients::create(
            conn,
            NewClient {
                name: "Demo client".into(),
                grant_types: vec!["password".into(), "refresh_token".into()],
                ..NewClient::default()
            },
            now,
        )
        .await?;
        let client_secret =
            secret.ok_or_else(|| Error::Internal("a confidential client has a secret".into()))?;
        Ok(Some(DemoSetup {
            password,
            client_id: client.client_id,
            client_secret,
        }))
    })
    .await
}
