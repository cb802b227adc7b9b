use actix_web::{web, HttpRequest, HttpResponse};

use super::error::OAuthError;
use super::{client_auth, form, no_store};
use crate::startup::AppState;

/// `POST /oauth/revoke` (RFC 7009): 200 whether or not the token was known.
pub async fn revoke(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = form::read(&req, payload, state.max_body_bytes).await?;
    let presented = client_auth::presented(&req, &form)?;
    state
        .store
        .clone()
        .run(async move |conn| {
            let client = client_auth::authenticate(conn, &state.clients, presented).await?;
            let token = form.require("token")?;
            state
                .tokens
                .revoke(conn, &client, token, state.clock.now())
                .await
        })
        .await?;
    Ok(no_store(HttpResponse::Ok()).finish())
}
