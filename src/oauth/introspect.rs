use actix_web::{web, HttpRequest, HttpResponse};

use super::error::OAuthError;
use super::{client_auth, form, no_store};
use crate::startup::AppState;

/// `POST /oauth/introspect` (RFC 7662): for confidential clients only.
pub async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = form::read(&req, payload, state.max_body_bytes).await?;
    let presented = client_auth::presented(&req, &form)?;
    let answer = state
        .store
        .clone()
        .run(async move |conn| {
            let client = client_auth::authenticate(conn, &state.clients, presented).await?;
            if client.public {
                // RFC 7662 §2.1: the caller must be authorized; a public client proves nothing.
                return Err(OAuthError::InvalidClient(
                    "public clients may not introspect tokens".into(),
                ));
            }
            let token = form.require("token")?;
            state
                .tokens
                .introspect(conn, &client, token, state.clock.now())
                .await
        })
        .await?;
    Ok(no_store(HttpResponse::Ok()).json(answer))
}
