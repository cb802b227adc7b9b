//! How an `OAuthError` is answered over HTTP: the RFC body, status and headers.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

pub use crate::tokens::error::OAuthError;

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            OAuthError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            OAuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let OAuthError::Server(error) = self {
            tracing::error!(%error, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        response
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"));
        if matches!(self, OAuthError::InvalidClient(_)) {
            // RFC 6749 §5.2: a failed client authentication names the scheme to use.
            response.insert_header((
                header::WWW_AUTHENTICATE,
                "Basic realm=\"keyframe\", charset=\"UTF-8\"",
            ));
        }
        if let OAuthError::Locked { retry_after } = self {
            response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
        }
        response.json(json!({ "error": self.code(), "error_description": self.description() }))
    }
}
