use serde_json::json;

use super::{read_password, table, to_json, Report};
use crate::config::UserCommand;
use crate::db::Conn;
use crate::error::Error;
use crate::users::{self, User};

pub async fn execute(command: UserCommand, conn: &mut Conn, now: i64) -> Result<Report, Error> {
    let (verb, user) = match command {
        UserCommand::Create {
            username, tenants, ..
        } => {
            let tenants = tenants
                .iter()
                .map(|spec| users::parse_tenant_role(spec))
                .collect::<Result<Vec<_>, _>>()?;
            let password = read_password()?;
            (
                "Created",
                users::create(conn, &username, &password, &tenants, now).await?,
            )
        }
        UserCommand::List => {
            let all = users::list(conn).await?;
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|u| {
                    vec![
                        u.username.to_string(),
                        u.id.clone(),
                        if u.disabled { "disabled" } else { "active" }.into(),
                        memberships(u),
                    ]
                })
                .collect();
            return Ok(Report {
                human: table(&["USERNAME", "ID", "STATUS", "TENANTS (* default)"], &rows),
                json: json!({ "users": to_json(&all)? }),
            });
        }
        UserCommand::AddTenant {
            username,
            tenant,
            role,
        } => (
            "Updated",
            users::add_tenant(conn, &username, &tenant, role.parse()?, now).await?,
        ),
        UserCommand::RemoveTenant { username, tenant } => (
            "Updated",
            users::remove_tenant(conn, &username, &tenant, now).await?,
        ),
        UserCommand::Disable { username } => (
            "Disabled",
            users::set_disabled(conn, &username, true, now).await?,
        ),
        UserCommand::Enable { username } => (
            "Enabled",
            users::set_disabled(conn, &username, false, now).await?,
        ),
        UserCommand::SetPassword { username, .. } => {
            let password = read_password()?;
            (
                "Set the password of",
                users::set_password(conn, &username, &password, now).await?,
            )
        }
    };
    Ok(Report {
        human: format!(
            "{verb} user {} (id {}).\nTenants: {}",
            user.username,
            user.id,
            if user.tenants.is_empty() {
                "none".into()
            } else {
                memberships(&user)
            }
        ),
        json: to_json(&user)?,
    })
}

/// `acme:owner*, beta:member` with the default tenant starred.
fn memberships(user: &User) -> String {
    user.tenants
        .iter()
        .map(|m| {
            let star = if user.default_tenant.as_ref() == Some(&m.id) {
                "*"
            } else {
                ""
            };
            format!("{}:{}{star}", m.id, m.role)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
