use diesel::prelude::*;

use super::schema::clients;
use super::{from_json_list, to_json_list, DbConnection};
use crate::clients::{Client, Pkce};
use crate::error::Error;

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = clients)]
struct ClientRow {
    id: String,
    name: String,
    public: bool,
    secret_hash: Option<String>,
    redirect_uris: String,
    grant_types: String,
    scopes: String,
    pkce_required: bool,
    created_at: i64,
}

impl TryFrom<ClientRow> for Client {
    type Error = Error;

    fn try_from(row: ClientRow) -> Result<Self, Error> {
        let grant_types = from_json_list(&row.grant_types)
            .iter()
            .map(|g| g.parse())
            .collect::<Result<_, _>>()?;
        Ok(Client {
            client_id: row.id,
            name: row.name,
            public: row.public,
            redirect_uris: from_json_list(&row.redirect_uris),
            grant_types,
            scopes: from_json_list(&row.scopes),
            pkce: if row.pkce_required {
                Pkce::Required
            } else {
                Pkce::Optional
            },
            created_at: row.created_at,
        })
    }
}

pub fn insert(
    conn: &mut DbConnection,
    client: &Client,
    secret_digest: Option<&str>,
) -> Result<(), Error> {
    let grant_types: Vec<String> = client
        .grant_types
        .iter()
        .map(|g| g.as_str().to_owned())
        .collect();
    let row = ClientRow {
        id: client.client_id.clone(),
        name: client.name.clone(),
        public: client.public,
        secret_hash: secret_digest.map(str::to_owned),
        redirect_uris: to_json_list(&client.redirect_uris),
        grant_types: to_json_list(&grant_types),
        scopes: to_json_list(&client.scopes),
        pkce_required: client.pkce == Pkce::Required,
        created_at: client.created_at,
    };
    diesel::insert_into(clients::table)
        .values(&row)
        .execute(conn)?;
    Ok(())
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<Client>, Error> {
    clients::table
        .select(ClientRow::as_select())
        .order((clients::name, clients::id))
        .load(conn)?
        .into_iter()
        .map(Client::try_from)
        .collect()
}

/// True when a client was deleted.
pub fn delete(conn: &mut DbConnection, client_id: &str) -> Result<bool, Error> {
    Ok(diesel::delete(clients::table.find(client_id)).execute(conn)? == 1)
}

/// The client and its secret digest.
pub fn find(
    conn: &mut DbConnection,
    client_id: &str,
) -> Result<Option<(Client, Option<String>)>, Error> {
    let row = clients::table
        .find(client_id)
        .select(ClientRow::as_select())
        .get_result(conn)
        .optional()?;
    match row {
        Some(row) => {
            let digest = row.secret_hash.clone();
            Ok(Some((Client::try_from(row)?, digest)))
        }
        None => Ok(None),
    }
}
