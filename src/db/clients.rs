use super::dsl::*;

use super::schema::clients;
use super::{from_json_list, run, to_json_list, Conn};
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

pub async fn insert(
    conn: &mut Conn,
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
    run!(conn, |c| diesel::insert_into(clients::table)
        .values(&row)
        .execute(c))?;
    Ok(())
}

pub async fn list(conn: &mut Conn) -> Result<Vec<Client>, Error> {
    run!(conn, |c| clients::table
        .select(ClientRow::as_select())
        .order((clients::name, clients::id))
        .load(c))?
    .into_iter()
    .map(Client::try_from)
    .collect()
}

/// True when a client was deleted.
pub async fn delete(conn: &mut Conn, client_id: &str) -> Result<bool, Error> {
    Ok(
        run!(conn, |c| diesel::delete(clients::table.find(client_id))
            .execute(c))?
            == 1,
    )
}

/// The client and its secret digest.
pub async fn find(
    conn: &mut Conn,
    client_id: &str,
) -> Result<Option<(Client, Option<String>)>, Error> {
    let row = run!(conn, |c| clients::table
        .find(client_id)
        .select(ClientRow::as_select())
        .get_result(c))
    .optional()?;
    match row {
        Some(row) => {
            let digest = row.secret_hash.clone();
            Ok(Some((Client::try_from(row)?, digest)))
        }
        None => Ok(None),
    }
}
