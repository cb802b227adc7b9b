use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::web;
use futures_util::StreamExt;

use super::json_error;

/// Refuses a declared body over the limit before any handler runs: 413, nothing read, nothing
/// written. Bodies without a Content-Length (chunked) are bounded by the extractors' limits,
/// configured in `startup` with the same number.
pub async fn enforce_body_limit<B: MessageBody>(
    limit: usize,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        let response = json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            &format!("the request body is larger than the limit of {limit} bytes"),
        );
        return Ok(req.into_response(response).map_into_right_body());
    }
    Ok(next.call(req).await?.map_into_left_body())
}

pub enum BodyError {
    TooLarge(String),
    Unreadable(String),
}

/// Reads a whole body, stopping as soon as it passes `limit` (chunked bodies have no declared
/// length to check up front).
pub async fn read_body(
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, BodyError> {
    let too_large = || {
        BodyError::TooLarge(format!(
            "the request body is larger than the limit of {limit} bytes"
        ))
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => too_large(),
            other => BodyError::Unreadable(format!("the request body could not be read: {other}")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
