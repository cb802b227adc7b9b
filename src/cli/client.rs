use serde_json::json;

use super::{table, to_json, Report};
use crate::clients::{self, NewClient};
use crate::config::ClientCommand;
use crate::db::Conn;
use crate::error::Error;

pub async fn execute(command: ClientCommand, conn: &mut Conn, now: i64) -> Result<Report, Error> {
    match command {
        ClientCommand::Create {
            name,
            public,
            redirect_uris,
            grant_types,
            scopes,
            pkce,
        } => {
            let new = NewClient {
                name,
                public,
                redirect_uris,
                grant_types,
                scopes,
                pkce,
            };
            let (client, secret) = clients::create(conn, new, now).await?;
            let mut json = to_json(&client)?;
            let mut human = format!(
                "Created {} client {} ({}).\nclient_id:     {}\n",
                if client.public {
                    "public"
                } else {
                    "confidential"
                },
                client.name,
                grants(&client),
                client.client_id
            );
            if let Some(secret) = secret {
                json["client_secret"] = json!(secret.expose());
                human.push_str(&format!(
                    "client_secret: {}\nThis secret is shown once: store it now, Keyframe keeps only its digest.\n",
                    secret.expose()
                ));
            }
            Ok(Report { json, human })
        }
        ClientCommand::List => {
            let all = clients::list(conn).await?;
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|c| {
                    vec![
                        c.client_id.clone(),
                        c.name.clone(),
                        if c.public { "public" } else { "confidential" }.into(),
                        grants(c),
                        c.scopes.join(" "),
                        c.redirect_uris.join(" "),
                    ]
                })
                .collect();
            Ok(Report {
                human: table(
                    &[
                        "CLIENT_ID",
                        "NAME",
                        "TYPE",
                        "GRANTS",
                        "SCOPES",
                        "REDIRECT_URIS",
                    ],
                    &rows,
                ),
                json: json!({ "clients": to_json(&all)? }),
            })
        }
        ClientCommand::Delete { client_id } => {
            clients::delete(conn, &client_id).await?;
            Ok(Report {
                human: format!("Deleted client {client_id}."),
                json: json!({ "client_id": client_id, "deleted": true }),
            })
        }
    }
}

fn grants(client: &clients::Client) -> String {
    client
        .grant_types
        .iter()
        .map(|g| g.as_str())
        .collect::<Vec<_>>()
        .join(",")
}
