//! The login form and sign-out.

use actix_web::http::StatusCode;
use actix_web::{web as aweb, HttpRequest, HttpResponse};

use crate::authorization::AuthorizationRequest;
use crate::error::Error;
use crate::oauth::authorize::{self, Step};
use crate::startup::AppState;
use crate::{sessions, web};

/// The authorization request without `prompt=login`: once the user has signed in, it is met.
fn without_prompt_login(query: &str) -> String {
    let kept = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, v)| !(k == "prompt" && v == "login"));
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish()
}

/// `POST /oauth/authorize/login`: the same checks and lockout as the password grant, and the
/// same answer whether or not the user exists. A success starts a new session (a new id, so
/// a planted cookie is worthless) and continues the flow.
pub async fn login(
    req: HttpRequest,
    payload: aweb::Payload,
    state: aweb::Data<AppState>,
) -> HttpResponse {
    let form = match web::checked_form(&req, payload, &state).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let query = form.get("request").unwrap_or("").to_owned();
    let username = form.get("username").unwrap_or("").to_owned();
    let password = form.get("password").unwrap_or("").to_owned();
    let previous = state.cookies().session_value(&req);
    let source = state.proxies.source(&req);
    let worker = state.clone();
    let _turn = crate::passwords::turn().await;
    let result = worker
        .store
        .clone()
        .run(async move |conn| {
            let now = worker.clock.now();
            let request =
                match AuthorizationRequest::parse(conn, &query, &worker.tokens.issuer).await {
                    Ok(request) => request,
                    Err(refusal) => return Ok((Step::from(refusal), Err(None))),
                };
            match web::sign_in(
                &worker,
                conn,
                previous.as_deref(),
                &username,
                &password,
                &source,
                now,
            )
            .await?
            {
                web::SignIn::Started(session) => {
                    let next = format!("/oauth/authorize?{}", without_prompt_login(&query));
                    Ok((Step::Redirect(next), Ok(session)))
                }
                web::SignIn::Refused(refusal) => Ok((
                    authorize::login_step(
                        &request,
                        &query,
                        username.clone(),
                        Some((refusal.status, refusal.message.to_owned())),
                    ),
                    Err(Some(refusal)),
                )),
            }
        })
        .await;
    match result {
        Ok((Step::Redirect(location), Ok(session))) => web::redirect(
            StatusCode::SEE_OTHER,
            &location,
            web::signed_in_cookies(&state, &session),
        ),
        Ok((step, Err(Some(refusal)))) => {
            refusal.apply(authorize::respond(&req, &state, step, true))
        }
        Ok((step, _)) => authorize::respond(&req, &state, step, true),
        Err::<_, Error>(error) => {
            authorize::respond(&req, &state, authorize::internal(error), true)
        }
    }
}

/// The authorization request a sign-out came from, when it is one: a query string without
/// control characters or white space that names `response_type` and `client_id` once each.
/// It comes back re-serialised, so nothing the form carried reaches a header unencoded.
fn authorization_query(raw: &str) -> Option<String> {
    if raw.is_empty() || raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs
        .iter()
        .any(|(k, v)| k.is_empty() || k.chars().chain(v.chars()).any(char::is_control))
    {
        return None;
    }
    let once = |name: &str| {
        pairs
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .count()
            == 1
    };
    if !once("response_type") || !once("client_id") {
        return None;
    }
    Some(
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish(),
    )
}

/// `POST /oauth/logout`: ends the session. With the authorization request it came from, the
/// flow starts again at the login page. Every answer clears the cookie, failures included.
pub async fn logout(
    req: HttpRequest,
    payload: aweb::Payload,
    state: aweb::Data<AppState>,
) -> HttpResponse {
    let form = match web::checked_form(&req, payload, &state).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let cleared = || vec![state.cookies().clear_session()];
    if let Some(cookie) = state.cookies().session_value(&req) {
        let worker = state.clone();
        let ended = worker
            .store
            .clone()
            .run(async move |conn| sessions::end(conn, &cookie).await)
            .await;
        if ended.is_err() {
            tracing::error!("sign-out could not end the session in the database");
            return web::message_with_cookies(
                StatusCode::SERVICE_UNAVAILABLE,
                "Something went wrong",
                "You may not be fully signed out. Please try again in a moment.",
                cleared(),
            );
        }
    }
    match form.get("request").and_then(authorization_query) {
        Some(query) => web::redirect(
            StatusCode::SEE_OTHER,
            &format!("/oauth/authorize?{query}"),
            cleared(),
        ),
        None => web::message_with_cookies(
            StatusCode::OK,
            "Signed out",
            "You are signed out of Keyframe.",
            cleared(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_out_returns_only_to_authorization_requests() {
        let query = "response_type=code&client_id=abc&state=x%20y&redirect_uri=https%3A%2F%2Fa.example%2Fcb";
        assert_eq!(
            authorization_query(query).as_deref(),
            Some("response_type=code&client_id=abc&state=x+y&redirect_uri=https%3A%2F%2Fa.example%2Fcb")
        );
        for bad in [
            "",
            "client_id=abc",
            "response_type=code",
            "response_type=code&client_id=abc\r\nSet-Cookie: x=1",
            "response_type=code&client_id=abc&state=%0d%0aSet-Cookie:%20x=1",
            "response_type=code&client_id=abc&client_id=def",
            "response_type=code&client_id=",
            "response_type=code&client_id=abc&x=%00",
            "response_type=code&client_id=abc&=v",
        ] {
            assert_eq!(authorization_query(bad), None, "{bad:?}");
        }
    }
}
