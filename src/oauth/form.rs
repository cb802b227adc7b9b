//! Reading a form body off an HTTP request; the parsing rules are `crate::form`'s.

use actix_web::{web, HttpRequest};

use super::error::OAuthError;
use crate::form::Form;
use crate::http::limits::{read_body, BodyError};

/// Reads and parses the body, refusing another content type or more than `limit` bytes.
pub async fn read(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Form, OAuthError> {
    if !crate::http::has_media_type(req, "application/x-www-form-urlencoded") {
        return Err(OAuthError::InvalidRequest(
            "the content type must be application/x-www-form-urlencoded".into(),
        ));
    }
    let body = read_body(payload, limit).await.map_err(|e| match e {
        BodyError::TooLarge(d) => OAuthError::TooLarge(d),
        BodyError::Unreadable(d) => OAuthError::InvalidRequest(d),
    })?;
    Form::parse(&body)
}
