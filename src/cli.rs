//! The admin command line. Each noun has its module; all of them call the same domain
//! functions as the HTTP layer. With `--json` every command prints exactly one JSON object.

mod client;
mod key;
mod serve;
mod stream;
mod tenant;
mod user;

use std::io::BufRead;

use serde_json::{json, Value};

use crate::config::{Cli, Command, Config};
use crate::db::Conn;
use crate::error::Error;
use crate::{clock, startup, telemetry};

/// What a command prints: one JSON object with `--json`, text for people otherwise.
pub struct Report {
    pub json: Value,
    pub human: String,
}

/// A command's report and its exit code. A check whose answer is "no" (a URL that does not
/// verify) exits 1 like a refusal, but its answer is the report asked for, printed on stdout,
/// not an error.
struct Outcome {
    report: Report,
    code: i32,
}

impl From<Report> for Outcome {
    fn from(report: Report) -> Self {
        Self { report, code: 0 }
    }
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    let json = cli.global.json;
    let serving = matches!(cli.command, Command::Serve(_));
    let default_filter = if serving { "info" } else { "error" };
    telemetry::init(
        cli.global.log.as_deref().unwrap_or(default_filter),
        cli.global.log_json,
    );

    let result = Config::from_args(&cli.global).and_then(|config| match cli.command {
        Command::Serve(args) => serve::run(&config, &args, json).map(|()| 0),
        command => {
            let store = startup::prepare_database(&config)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Internal(format!("cannot start the runtime: {e}")))?;
            let outcome = runtime.block_on(async {
                let mut conn = store.conn().await?;
                execute(command, &config, &mut conn, clock::now()).await
            })?;
            print_report(&outcome.report, json);
            Ok(outcome.code)
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            if json {
                eprintln!(
                    "{}",
                    json!({ "error": error.to_string(), "kind": kind(&error) })
                );
            } else {
                eprintln!("error: {error}");
            }
            error.exit_code()
        }
    }
}

async fn execute(
    command: Command,
    config: &Config,
    conn: &mut Conn,
    now: i64,
) -> Result<Outcome, Error> {
    let secret_key = config.secret_key.as_ref();
    let report = match command {
        Command::Migrate => Report {
            json: json!({ "status": "up to date" }),
            human: "The database schema is up to date.".into(),
        },
        Command::Tenant(c) => tenant::execute(c, secret_key, conn, now).await?,
        Command::User(c) => user::execute(c, conn, now).await?,
        Command::Client(c) => client::execute(c, conn, now).await?,
        Command::Key(c) => key::execute(c, conn, now).await?,
        Command::VerifyUrl {
            url,
            tenant,
            ip,
            at,
        } => {
            let at = at.unwrap_or_else(clock::now_ms);
            return tenant::verify_url(conn, secret_key, &tenant, &url, ip, at).await;
        }
        Command::VerifyToken {
            token,
            stream,
            action,
            position,
            at,
        } => {
            let question = stream::Question {
                token: &token,
                stream: stream.as_deref(),
                action: action
                    .as_deref()
                    .and_then(crate::tokens::stream::Action::parse),
                position,
                at: at.unwrap_or(now),
            };
            return stream::verify_token(conn, config, question).await;
        }
        Command::Purge => {
            let purged = crate::tokens::purge(conn, &config.tokens, now).await?;
            Report {
                human: format!(
                    "Purged {} token families, {} refresh tokens, {} revoked access token ids, \
                     {} sign-in failures, {} retired keys, {} sessions, {} authorization codes \
                     and {} stream tokens.",
                    purged.token_families,
                    purged.refresh_tokens,
                    purged.revoked_access_tokens,
                    purged.login_failures,
                    purged.signing_keys,
                    purged.sessions,
                    purged.authorization_codes,
                    purged.stream_tokens
                ),
                json: serde_json::json!({ "purged": to_json(&purged)? }),
            }
        }
        Command::Serve(_) => return Err(Error::Internal("serve is not a one-shot command".into())),
    };
    Ok(report.into())
}

fn kind(error: &Error) -> &'static str {
    match error {
        Error::Invalid(_) => "invalid",
        Error::NotFound(_) => "not_found",
        Error::Conflict(_) | Error::AlreadyUsed => "conflict",
        Error::Config(_) => "config",
        Error::Unavailable(_) => "unavailable",
        Error::Internal(_) | Error::Database(_) => "internal",
    }
}

pub(crate) fn print_report(report: &Report, json: bool) {
    if json {
        println!("{}", report.json);
    } else {
        println!("{}", report.human.trim_end());
    }
}

/// The first line of standard input without its line ending.
fn read_password() -> Result<String, Error> {
    read_first_line("the password")
}

/// The first line of standard input without its line ending; `what` names it in errors.
fn read_first_line(what: &str) -> Result<String, Error> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::Invalid(format!("cannot read {what} from standard input: {e}")))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    Ok(line.to_owned())
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::Internal(format!("cannot encode output: {e}")))
}

/// Columns aligned to their widest cell, for people reading a terminal.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn tables_align_columns() {
        let out = table(
            &["ID", "NAME"],
            &[
                vec!["a".into(), "Alpha".into()],
                vec!["long-id".into(), "B".into()],
            ],
        );
        assert_eq!(out, "ID       NAME\na        Alpha\nlong-id  B\n");
    }
}
