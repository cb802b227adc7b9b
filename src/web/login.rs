//! The login form and sign-out.

use actix_web::http::StatusCode;
use actix_web::{web as aweb, HttpRequest, HttpResponse};

use crate::authorization::AuthorizationRequest;
use crate::error::Error;
use crate::oauth::authorize::{self, Step};
use crate::startup::AppState;
use crate::{clock, sessions, web};

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
    let form = match web::checked_form(&req, payload, state.max_body_bytes).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let query = form.get("request").unwrap_or("").to_owned();
    let username = form.get("username").unwrap_or("").to_owned();
    let password = form.get("password").unwrap_or("").to_owned();
    let previous = web::session_value(&req);
    let worker = state.clone();
    let _turn = crate::passwords::turn().await;
    let result = aweb::block(move || {
        let mut conn = worker.db.conn()?;
        let now = clock::now();
        let request = match AuthorizationRequest::parse(&mut conn, &query, &worker.tokens.issuer) {
            Ok(request) => request,
            Err(refusal) => return Ok((Step::from(refusal), None)),
        };
        match web::sign_in(
            &worker,
            &mut conn,
            previous.as_deref(),
            &username,
            &password,
            now,
        )? {
            web::SignIn::Started(session) => {
                let next = format!("/oauth/authorize?{}", without_prompt_login(&query));
                Ok((Step::Redirect(next), Some(session)))
            }
            web::SignIn::Refused(status, message) => Ok((
                authorize::login_step(
                    &request,
                    &query,
                    username.clone(),
                    Some((status, message.to_owned())),
                ),
                None,
            )),
        }
    })
    .await;
    match result {
        Ok(Ok((Step::Redirect(location), Some(session)))) => {
            let secure = state.tokens.issuer.starts_with("https://");
            let cookie =
                web::session_cookie(session.expose(), secure, state.tokens.settings.session_ttl);
            web::redirect(StatusCode::SEE_OTHER, &location, vec![cookie])
        }
        Ok(Ok((step, _))) => authorize::respond(&req, &state, step, true),
        Ok(Err(error)) => authorize::respond(&req, &state, authorize::internal(error), true),
        Err(error) => authorize::respond(
            &req,
            &state,
            authorize::internal(Error::Internal(error.to_string())),
            true,
        ),
    }
}

/// `POST /oauth/logout`: ends the session. With the authorization request it came from, the
/// flow starts again at the login page.
pub async fn logout(
    req: HttpRequest,
    payload: aweb::Payload,
    state: aweb::Data<AppState>,
) -> HttpResponse {
    let form = match web::checked_form(&req, payload, state.max_body_bytes).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    if let Some(cookie) = web::session_value(&req) {
        let worker = state.clone();
        let ended = aweb::block(move || {
            let mut conn = worker.db.conn()?;
            sessions::end(&mut conn, &cookie)
        })
        .await;
        if !matches!(ended, Ok(Ok(()))) {
            return authorize::respond(
                &req,
                &state,
                authorize::internal(Error::Internal("sign-out failed".into())),
                true,
            );
        }
    }
    let secure = state.tokens.issuer.starts_with("https://");
    match form.get("request") {
        Some(query) => {
            let location = format!("/oauth/authorize?{query}");
            web::redirect(
                StatusCode::SEE_OTHER,
                &location,
                vec![web::clear_session_cookie(secure)],
            )
        }
        None => {
            let mut response = web::message(
                StatusCode::OK,
                "Signed out",
                "You are signed out of Keyframe.",
            );
            if let Err(error) = response.add_cookie(&web::clear_session_cookie(secure)) {
                tracing::error!(%error, "could not clear the session cookie");
            }
            response
        }
    }
}
