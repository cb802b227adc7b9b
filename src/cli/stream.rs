//! `verify-token`: what a media server does with a stream token, from the command line.

use serde_json::json;

use super::{Outcome, Report};
use crate::config::Config;
use crate::db::Conn;
use crate::error::Error;
use crate::tokens::stream::{self, Action, Asked};
use crate::tokens::TokenService;

/// What `verify-token` asks about a token.
pub(super) struct Question<'a> {
    pub token: &'a str,
    pub stream: Option<&'a str>,
    pub action: Option<Action>,
    /// The archive time asked, unix seconds.
    pub position: Option<i64>,
    /// The moment of the check, unix seconds.
    pub at: i64,
}

/// Exit 0 when the token allows what is asked at `at` (signature by a published key, times,
/// revocation, stream, permission, window), 1 with the reason when it does not.
pub(super) async fn verify_token(
    conn: &mut Conn,
    config: &Config,
    question: Question<'_>,
) -> Result<Outcome, Error> {
    // Without --issuer the CLI cannot know the server's public URL; the signature by one of
    // this database's keys is what proves the token ours.
    let issuer = config
        .issuer
        .clone()
        .or_else(|| stream::unverified_issuer(question.token))
        .unwrap_or_default();
    let service = TokenService::new(conn, issuer, config.tokens.clone(), question.at).await?;
    let asked = question.action.map(|action| Asked {
        action,
        archive: question.position.map(|at| (at, at)),
    });
    let verdict = service
        .check_stream_token(conn, question.token, question.stream, asked, question.at)
        .await?;
    Ok(match verdict {
        Ok(claims) => {
            let perms: Vec<&str> = [
                (claims.perm.live, "live"),
                (claims.perm.dvr, "dvr"),
                (claims.perm.copy, "copy"),
            ]
            .iter()
            .filter_map(|(on, name)| on.then_some(*name))
            .collect();
            let window = claims.window.map_or_else(
                || "none".to_owned(),
                |w| format!("from {} to {} (0: unbounded)", w.from, w.to),
            );
            let expires = claims
                .exp
                .map_or_else(|| "never".to_owned(), |exp| exp.to_string());
            Outcome {
                report: Report {
                    human: format!(
                        "Allowed.\nstream   {}\ntenant   {}\nperm     {}\nwindow   {window}\n\
                         expires  {expires}\njti      {}",
                        claims.sub,
                        claims.tenant,
                        perms.join(", "),
                        claims.jti
                    ),
                    json: json!({ "allowed": true, "claims": &*claims }),
                },
                code: 0,
            }
        }
        Err(denial) => Outcome {
            report: Report {
                human: format!("Denied: {denial}."),
                json: json!({ "allowed": false, "reason": denial.to_string() }),
            },
            code: 1,
        },
    })
}
