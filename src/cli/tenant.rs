use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::{read_first_line, table, to_json, Outcome, Report};
use crate::config::TenantCommand;
use crate::db::Conn;
use crate::error::Error;
use crate::secrets::SecretKey;
use crate::signed_url::{self, Policy};
use crate::tenants::{self, url_secret, TenantId};

pub async fn execute(
    command: TenantCommand,
    key: Option<&SecretKey>,
    conn: &mut Conn,
    now: i64,
) -> Result<Report, Error> {
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
        TenantCommand::UrlSecret {
            tenant, set_stdin, ..
        } => {
            let tenant = TenantId::parse(&tenant)?;
            // clap's group admits exactly one of --rotate and --set-stdin.
            if set_stdin {
                let secret = read_first_line("the URL secret")?;
                url_secret::set(conn, key, &tenant, &secret, now).await?;
                Ok(Report {
                    human: format!("Stored the URL secret of tenant {tenant}."),
                    json: json!({ "tenant": tenant, "set": true }),
                })
            } else {
                let secret = url_secret::rotate(conn, key, &tenant, now).await?;
                Ok(Report {
                    human: format!(
                        "New URL secret of tenant {tenant}; it is shown only this once. Put it \
                         in OvenMediaEngine's <SignedPolicy><SecretKey>:\n{}",
                        secret.expose()
                    ),
                    json: json!({ "tenant": tenant, "secret": secret.expose() }),
                })
            }
        }
    }
}

/// `verify-url`: exit 0 when the tenant's secret admits `url` for `ip` at `at_ms`, 1 with the
/// reason when it does not.
pub(super) async fn verify_url(
    conn: &mut Conn,
    key: Option<&SecretKey>,
    tenant: &str,
    url: &str,
    ip: Option<IpAddr>,
    at_ms: i64,
) -> Result<Outcome, Error> {
    let tenant = TenantId::parse(tenant)?;
    let secret = url_secret::get(conn, key, &tenant).await?.ok_or_else(|| {
        Error::NotFound(format!(
            "tenant {tenant} has no URL secret: make one with \
             `keyframe tenant url-secret {tenant} --rotate`"
        ))
    })?;
    // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; the policy names IPv4.
    let ip = ip.map(|ip| ip.to_canonical());
    Ok(match signed_url::verify(url, &secret, ip, at_ms) {
        Ok(policy) => Outcome {
            report: Report {
                human: format!(
                    "Allowed: the signature matches and the policy admits it (times in unix ms).\n{}",
                    policy_lines(&policy)
                ),
                json: json!({ "allowed": true, "policy": policy_json(&policy) }),
            },
            code: 0,
        },
        Err(refusal) => Outcome {
            report: Report {
                human: format!("Denied: {refusal}."),
                json: json!({ "allowed": false, "reason": refusal.to_string() }),
            },
            code: 1,
        },
    })
}

/// The policy's fields that are set, as named in the URL's JSON.
fn policy_fields(policy: &Policy) -> Vec<(&'static str, Value)> {
    let mut fields = vec![("url_expire", json!(policy.url_expire))];
    if let Some(at) = policy.url_activate {
        fields.push(("url_activate", json!(at)));
    }
    if let Some(at) = policy.stream_expire {
        fields.push(("stream_expire", json!(at)));
    }
    if let Some(range) = policy.allow_ip {
        fields.push(("allow_ip", json!(range.to_string())));
    }
    fields
}

fn policy_json(policy: &Policy) -> Value {
    let fields: Map<String, Value> = policy_fields(policy)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    Value::Object(fields)
}

fn policy_lines(policy: &Policy) -> String {
    let rows: Vec<Vec<String>> = policy_fields(policy)
        .into_iter()
        .map(|(name, value)| {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            vec![name.to_owned(), value]
        })
        .collect();
    table(&["POLICY", "VALUE"], &rows)
}
