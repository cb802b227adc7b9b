use serde_json::json;

use super::{table, to_json, Report};
use crate::config::TenantCommand;
use crate::db::Conn;
use crate::error::Error;
use crate::tenants;

pub async fn execute(command: TenantCommand, conn: &mut Conn, now: i64) -> Result<Report, Error> {
    match command {
        TenantCommand::Create { id, name } => {
            let tenant = tenants::create(conn, &id, &name, now).await?;
            Ok(Report {
                human: format!("Created tenant {} ({}).", tenant.id, tenant.name),
                json: to_json(&tenant)?,
            })
        }
        TenantCommand::List => {
            let all = tenants::list(conn).await?;
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|t| vec![t.id.to_string(), t.name.clone()])
                .collect();
            Ok(Report {
                human: table(&["ID", "NAME"], &rows),
                json: json!({ "tenants": to_json(&all)? }),
            })
        }
    }
}
