use actix_web::{web, HttpRequest, HttpResponse};

use super::error::OAuthError;
use super::form;
use super::{client_auth, no_store};
use crate::form::Form;
use crate::startup::AppState;
use crate::tokens::GrantRequest;

/// `POST /oauth/token` (RFC 6749 §3.2): the password and refresh_token grants.
pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = form::read(&req, payload, state.max_body_bytes).await?;
    let presented = client_auth::presented(&req, &form)?;
    // Only a password attempt needs its source (for the lockout) and an argon2 turn; the
    // refresh and introspection hot paths skip both.
    let (source, _turn) = match form.get("grant_type") {
        Some("password") => (state.proxies.source(&req), crate::passwords::turn().await),
        _ => (String::new(), None),
    };
    let response = state
        .store
        .clone()
        .run(async move |conn| {
            // The client first: an unauthenticated caller learns nothing about the request.
            let client = client_auth::authenticate(conn, &state.clients, presented).await?;
            let request = grant_request(&form, source)?;
            state
                .tokens
                .grant(conn, &client, request, state.clock.now())
                .await
        })
        .await?;
    Ok(no_store(HttpResponse::Ok()).json(response))
}

fn grant_request(form: &Form, source: String) -> Result<GrantRequest, OAuthError> {
    let optional = |name: &str| form.get(name).map(str::to_owned);
    match form.require("grant_type")? {
        "password" => Ok(GrantRequest::Password {
            username: form.require("username")?.to_owned(),
            password: form.require("password")?.to_owned(),
            scope: optional("scope"),
            tenant: optional("tenant"),
            source,
        }),
        "refresh_token" => Ok(GrantRequest::Refresh {
            refresh_token: form.require("refresh_token")?.to_owned(),
            scope: optional("scope"),
            tenant: optional("tenant"),
        }),
        "authorization_code" => Ok(GrantRequest::AuthorizationCode {
            code: form.require("code")?.to_owned(),
            redirect_uri: optional("redirect_uri"),
            code_verifier: optional("code_verifier"),
        }),
        crate::clients::TOKEN_EXCHANGE => Ok(GrantRequest::TokenExchange {
            subject_token: form.require("subject_token")?.to_owned(),
            subject_token_type: form.require("subject_token_type")?.to_owned(),
            requested_token_type: optional("requested_token_type"),
            scope: optional("scope"),
            audience: optional("audience"),
            resource: optional("resource"),
            actor_token: optional("actor_token"),
        }),
        other => Err(OAuthError::UnsupportedGrantType(format!(
            "the grant type {other:?} is not supported"
        ))),
    }
}
