use serde_json::json;

use super::{table, to_json, Report};
use crate::config::KeyCommand;
use crate::db::Conn;
use crate::error::Error;
use crate::keys;

pub async fn execute(command: KeyCommand, conn: &mut Conn, now: i64) -> Result<Report, Error> {
    match command {
        KeyCommand::Rotate => {
            let key = keys::rotate(conn, now).await?;
            Ok(Report {
                human: format!(
                    "Created signing key {} ({}); it signs from now on. Older keys stay in the JWKS \
                     until the tokens they signed have expired.",
                    key.kid, key.algorithm
                ),
                json: to_json(&key)?,
            })
        }
        KeyCommand::List => {
            keys::ensure_current(conn, now).await?;
            let all = keys::list(conn).await?;
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|k| {
                    vec![
                        k.kid.clone(),
                        k.algorithm.into(),
                        k.created_at.to_string(),
                        k.retired_at.map(|r| r.to_string()).unwrap_or_default(),
                        if k.current { "current" } else { "" }.into(),
                    ]
                })
                .collect();
            Ok(Report {
                human: table(&["KID", "ALG", "CREATED", "RETIRED", ""], &rows),
                json: json!({ "keys": to_json(&all)? }),
            })
        }
    }
}
