use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::OAuthError;
use super::{AUTHORIZATION_PATH, INTROSPECTION_PATH, JWKS_PATH, REVOCATION_PATH, TOKEN_PATH};
use crate::keys::ALGORITHM;
use crate::startup::AppState;

/// Clients (and so `scopes_supported`) change through the CLI, on any instance: the document
/// is rebuilt from the database at most this often.
const MAX_AGE: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct MetadataCache(RwLock<Option<(Instant, Arc<String>)>>);

impl MetadataCache {
    fn fresh(&self) -> Option<Arc<String>> {
        let guard = self.0.read().ok()?;
        guard
            .as_ref()
            .filter(|(at, _)| at.elapsed() < MAX_AGE)
            .map(|(_, doc)| doc.clone())
    }

    fn store(&self, doc: Arc<String>) {
        if let Ok(mut guard) = self.0.write() {
            *guard = Some((Instant::now(), doc));
        }
    }
}

/// RFC 8414 authorization server metadata: the issuer and every endpoint that exists.
pub async fn authorization_server(state: web::Data<AppState>) -> Result<HttpResponse, OAuthError> {
    let doc = match state.metadata.fresh() {
        Some(doc) => doc,
        None => {
            let state = state.clone();
            state
                .store
                .clone()
                .run(async move |conn| {
                    let scopes = crate::clients::all_scopes(conn).await?;
                    let doc = Arc::new(document(&state.tokens.issuer, &scopes).to_string());
                    state.metadata.store(doc.clone());
                    Ok::<_, OAuthError>(doc)
                })
                .await?
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(doc.as_str().to_owned()))
}

fn document(issuer: &str, scopes: &[String]) -> serde_json::Value {
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}{TOKEN_PATH}"),
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "introspection_endpoint": format!("{issuer}{INTROSPECTION_PATH}"),
        "revocation_endpoint": format!("{issuer}{REVOCATION_PATH}"),
        "authorization_endpoint": format!("{issuer}{AUTHORIZATION_PATH}"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "password", crate::clients::TOKEN_EXCHANGE],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": auth_methods,
        // Introspection reveals token contents: confidential clients only.
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "scopes_supported": scopes,
        // RFC 9068 access tokens; no registered metadata name exists, this is the common one.
        "access_token_signing_alg_values_supported": [ALGORITHM],
    })
}
