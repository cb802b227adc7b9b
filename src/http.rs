//! HTTP concerns shared by every surface: JSON error bodies, body limits, health.

pub mod endpoint;
pub mod health;
pub mod limits;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use limits::{read_body, BodyError};

/// The JSON error shape of RFC 6749 §5.2, used for every error outside the protocol endpoints
/// too, so that clients need to read one shape only.
pub fn json_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "error": error, "error_description": description }))
}

pub async fn not_found() -> HttpResponse {
    json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// Why a JSON body was not accepted: each surface words it in its own error shape.
#[derive(Debug)]
pub struct Rejection {
    pub status: StatusCode,
    pub error: &'static str,
    pub message: String,
}

fn reject(status: StatusCode, error: &'static str, message: impl Into<String>) -> Rejection {
    Rejection {
        status,
        error,
        message: message.into(),
    }
}

/// A JSON object body of type `T`: 415 for another content type, 413 over the limit, 400 for
/// anything that is not such an object.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, Rejection> {
    if !has_media_type(req, "application/json") {
        return Err(reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the content type must be application/json",
        ));
    }
    let body = read_body(payload, limit).await.map_err(|e| match e {
        BodyError::TooLarge(m) => reject(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", m),
        BodyError::Unreadable(m) => reject(StatusCode::BAD_REQUEST, "bad_request", m),
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request body is empty: send a JSON object",
        ));
    }
    let value = crate::json::parse(&body).map_err(|e| {
        // The VideoManager documentation's own example uses single quotes; say what is wrong.
        let message = if body.contains(&b'\'') && e.is_syntax() {
            "the request body is not valid JSON: JSON needs double quotes (\") around names and strings, not single quotes".to_owned()
        } else {
            format!("the request body is not valid JSON: {e}")
        };
        reject(StatusCode::BAD_REQUEST, "bad_request", message)
    })?;
    // serde would also take an array for a struct; the APIs take objects only.
    if !value.is_object() {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request body must be a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        reject(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the request body is not the expected JSON object: {e}"),
        )
    })
}

/// Whether the body is of this media type (parameters such as `charset` aside).
pub fn has_media_type(req: &HttpRequest, expected: &str) -> bool {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(expected)
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1).
pub fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}
