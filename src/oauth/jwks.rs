use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::error::OAuthError;
use crate::startup::AppState;

/// `GET /oauth/jwks` (RFC 7517): the public keys that verify unexpired access tokens.
pub async fn jwks(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    let mut loaded = state.tokens.keys.get();
    if !loaded.is_fresh() {
        loaded = state
            .store
            .clone()
            .run(async move |conn| state.tokens.keys.for_jwks(conn, state.clock.now()).await)
            .await?;
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .body(loaded.jwks.clone()))
}
