//! The revocation list of a tenant's stream tokens, for media servers that verify tokens
//! offline: public (it holds only ids of tokens that no longer work), cheap to poll with
//! `If-None-Match`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::http::endpoint::Endpoint;
use crate::http::json_error;
use crate::startup::AppState;
use crate::tenants::TenantId;
use crate::tokens::stream;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/api/v1/tenants/{tenant}/stream-tokens/revoked").get(revoked));
}

/// A strong validator of exactly these bytes.
fn etag(body: &[u8]) -> String {
    format!(
        "\"{}\"",
        URL_SAFE_NO_PAD.encode(&Sha256::digest(body)[..16])
    )
}

/// RFC 9110 §13.1.2: `*` or any listed tag, compared weakly (a `W/` prefix does not matter).
fn none_match(req: &HttpRequest, tag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == tag)
}

async fn revoked(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let raw = path.into_inner();
    let Ok(tenant) = TenantId::parse(&raw) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no tenant {raw}"),
        );
    };
    let worker = state.clone();
    let ids = state
        .store
        .clone()
        .run(async move |conn| stream::revoked(conn, &tenant, worker.clock.now()).await)
        .await;
    let ids = match ids {
        Ok(ids) => ids,
        Err(Error::NotFound(message)) => {
            return json_error(StatusCode::NOT_FOUND, "not_found", &message)
        }
        Err(Error::Unavailable(message)) => {
            tracing::warn!(%message, "revocation list unavailable");
            let mut response = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the database is unavailable: try again shortly",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        Err(error) => {
            tracing::error!(%error, "revocation list failed");
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the server could not handle the request",
            );
        }
    };
    let body = json!({ "revoked": ids }).to_string();
    let tag = etag(body.as_bytes());
    // Stored copies must be revalidated: a revocation has to reach verifiers on their next poll.
    if none_match(&req, &tag) {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, tag))
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .finish();
    }
    HttpResponse::Ok()
        .insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .content_type("application/json")
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::etag;

    #[test]
    fn tags_follow_the_bytes() {
        let a = etag(br#"{"revoked":[]}"#);
        assert_eq!(a, etag(br#"{"revoked":[]}"#));
        assert_ne!(a, etag(br#"{"revoked":["x"]}"#));
        assert!(
            a.starts_with('"') && a.ends_with('"') && a.len() == 24,
            "{a}"
        );
    }
}
