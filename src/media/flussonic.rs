//! Flussonic's HTTP authorization backend: on every play Flussonic asks
//! `GET /api/stream-auth?name=…&token=…&media_request=…&…` and admits the viewer on a 200, for
//! `X-AuthDuration` seconds. What is asked (live, the DVR archive, a download) and which archive
//! time comes from `media_request`, in the forms Flussonic's "DVR and authorization" table lists.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::http::endpoint::Endpoint;
use crate::startup::AppState;
use crate::tokens::stream::{Action, Asked, Denial, StreamClaims};

pub const PATH: &str = "/api/stream-auth";
/// Archive times past 9999-12-31 are not times.
const MAX_UNIX_SECONDS: i64 = 253_402_300_799;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new(PATH).get(stream_auth));
}

/// A `media_request` whose archive time cannot be read: refused rather than guessed.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

fn seconds(digits: &str) -> Result<i64, Malformed> {
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Malformed);
    }
    digits
        .parse::<i64>()
        .ok()
        .filter(|n| *n <= MAX_UNIX_SECONDS)
        .ok_or(Malformed)
}

/// The digits after the last `marker`, when they end the request.
fn after<'a>(request: &'a str, marker: &str) -> Option<&'a str> {
    request
        .rfind(marker)
        .map(|at| &request[at + marker.len()..])
}

/// What a `media_request` asks for at `now`. Missing or unknown requests are live.
pub fn asked(media_request: Option<&str>, now: i64) -> Result<Asked, Malformed> {
    let request = media_request.unwrap_or("");
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| request.starts_with(p));
    let action = if starts(&["dvr_handler-mp4-", "dvr_stream_handler-ts_file-"]) {
        Action::Copy
    } else if starts(&[
        "dvr_session-",
        "dvr_stream_handler-ts_stream-",
        "dvr_handler-timeshift_",
        "hls_timeshift_playlist-",
    ]) {
        Action::Dvr
    } else {
        Action::Live
    };
    if action == Action::Live {
        return Ok(Asked {
            action,
            archive: None,
        });
    }
    let archive = if let Some(digits) = after(request, "timeshift_abs-") {
        let at = seconds(digits)?;
        Some((at, at))
    } else if let Some(digits) = after(request, "timeshift_rel-") {
        let at = now - seconds(digits)?;
        Some((at, at))
    } else {
        // `…-FROM-DURATION`: the whole span must be open to the token.
        let mut tail = request.rsplitn(3, '-');
        match (tail.next(), tail.next(), tail.next()) {
            (Some(duration), Some(from), Some(_))
                if !duration.is_empty() && duration.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let from = seconds(from)?;
                let end = from
                    .checked_add(seconds(duration)?)
                    .filter(|end| *end <= MAX_UNIX_SECONDS)
                    .ok_or(Malformed)?;
                Some((from, end))
            }
            _ => None,
        }
    };
    Ok(Asked { action, archive })
}

/// The one value of a query parameter; `Err` when it is given more than once.
fn single(query: &[(String, String)], name: &str) -> Result<Option<String>, String> {
    let mut values = query.iter().filter(|(n, _)| n == name).map(|(_, v)| v);
    let first = values.next().cloned();
    if values.next().is_some() {
        return Err(format!("{name} given more than once"));
    }
    Ok(first)
}

fn denied(reason: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::FORBIDDEN)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("text/plain; charset=utf-8")
        .body(reason.to_owned())
}

fn allowed(claims: &StreamClaims, cache: i64, now: i64) -> HttpResponse {
    // Never cached past expiry; at least a second, as a 0 would mean "ask again at once".
    let duration = claims
        .remaining(now)
        .map_or(cache, |left| left.min(cache))
        .max(1);
    let body = match claims.window {
        Some(window) => json!({
            "allowed_dvr_ranges": [{ "opened_at": window.from, "closed_at": window.to }]
        }),
        None => json!({}),
    };
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-AuthDuration", duration.to_string()))
        .insert_header(("X-UserId", claims.jti.clone()))
        .json(body)
}

async fn stream_auth(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let query: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    let read = |name| single(&query, name);
    let (name, token, media_request) = match (read("name"), read("token"), read("media_request")) {
        (Ok(name), Ok(token), Ok(media_request)) => (name, token, media_request),
        (Err(reason), _, _) | (_, Err(reason), _) | (_, _, Err(reason)) => return denied(&reason),
    };
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return denied("no stream name");
    };
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return denied(&Denial::Missing.to_string());
    };
    let now = state.clock.now();
    let Ok(asked) = asked(media_request.as_deref(), now) else {
        return denied("malformed media_request");
    };
    let worker = state.clone();
    let outcome = state
        .store
        .clone()
        .run(async move |conn| {
            worker
                .tokens
                .check_stream_token(conn, &token, Some(&name), Some(asked), now)
                .await
        })
        .await;
    match outcome {
        Ok(Ok(claims)) => allowed(&claims, state.tokens.settings.stream_auth_cache, now),
        Ok(Err(denial)) => denied(&denial.to_string()),
        Err(error) => {
            // The media server denies on anything but 200; say why in its log and ours.
            tracing::warn!(%error, "stream authorization could not be checked");
            HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .insert_header((header::RETRY_AFTER, "1"))
                .content_type("text/plain; charset=utf-8")
                .body("temporarily unavailable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn ask(request: &str) -> Asked {
        asked(Some(request), NOW).unwrap_or_else(|_| panic!("{request} is malformed"))
    }

    #[test]
    fn flussonics_table_maps_to_actions_and_times() {
        type Case = (&'static str, Action, Option<(i64, i64)>);
        let cases: &[Case] = &[
            ("hls_live-hls_mbr_playlist", Action::Live, None),
            ("hls_live-hls_track_playlist", Action::Live, None),
            ("mpegts_handler-request", Action::Live, None),
            (
                "dvr_session-hls_mbr_playlist-1362504585-3600",
                Action::Dvr,
                Some((1362504585, 1362508185)),
            ),
            (
                "dvr_session-bootstrap-1362504585-3600",
                Action::Dvr,
                Some((1362504585, 1362508185)),
            ),
            (
                "dvr_stream_handler-ts_stream-1362504585-3600",
                Action::Dvr,
                Some((1362504585, 1362508185)),
            ),
            (
                "dvr_handler-timeshift_abs-1362504585",
                Action::Dvr,
                Some((1362504585, 1362504585)),
            ),
            (
                "dvr_handler-timeshift_rel-3600",
                Action::Dvr,
                Some((NOW - 3600, NOW - 3600)),
            ),
            (
                "hls_timeshift_playlist-hls_track_timeshift_abs-1362504585",
                Action::Dvr,
                Some((1362504585, 1362504585)),
            ),
            (
                "hls_timeshift_playlist-hls_timeshift_rel-360",
                Action::Dvr,
                Some((NOW - 360, NOW - 360)),
            ),
            (
                "dvr_handler-mp4-1362504585-3600",
                Action::Copy,
                Some((1362504585, 1362508185)),
            ),
            (
                "dvr_stream_handler-ts_file-1362504585-3600",
                Action::Copy,
                Some((1362504585, 1362508185)),
            ),
            // Unknown requests are live, as the issue and Flussonic's default say.
            ("something_new-request", Action::Live, None),
            ("", Action::Live, None),
        ];
        for (request, action, archive) in cases {
            assert_eq!(
                ask(request),
                Asked {
                    action: *action,
                    archive: *archive
                },
                "{request}"
            );
        }
        assert_eq!(asked(None, NOW).map(|a| a.action), Ok(Action::Live));
    }

    #[test]
    fn unreadable_archive_times_are_refused() {
        for request in [
            "dvr_handler-timeshift_abs-",
            "dvr_handler-timeshift_abs-12x",
            "dvr_handler-timeshift_abs-99999999999999999999",
            "dvr_handler-mp4-253402300799-1",
            "dvr_handler-mp4-x-3600",
        ] {
            assert_eq!(asked(Some(request), NOW), Err(Malformed), "{request}");
        }
        // A DVR request without a time is left to the ranges the answer carries.
        assert_eq!(
            ask("dvr_session-hls_mbr_playlist"),
            Asked {
                action: Action::Dvr,
                archive: None
            }
        );
    }

    #[test]
    fn duplicated_parameters_are_refused() {
        let query = vec![
            ("token".to_owned(), "a".to_owned()),
            ("token".to_owned(), "b".to_owned()),
        ];
        assert!(single(&query, "token").is_err());
        assert_eq!(single(&query, "name"), Ok(None));
    }
}
