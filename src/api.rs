//! Keyframe's own REST API: API tokens under `/api/v1/tenants/{tenant}/tokens`, authenticated by
//! a Keyframe access token for that tenant or an API token whose role allows the action.

mod stream_tokens;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use crate::db::Conn;
use crate::error::Error;
use crate::http::endpoint::Endpoint;
use crate::http::{bearer, read_json};
use crate::startup::AppState;
use crate::tenants::TenantId;
use crate::tokens::api::{self, ApiError, NewApiToken, Principal};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        Endpoint::new("/api/v1/tenants/{tenant}/tokens")
            .get(list)
            .post(create),
    )
    .service(Endpoint::new("/api/v1/tenants/{tenant}/tokens/{id}/renew").post(renew))
    .service(Endpoint::new("/api/v1/tenants/{tenant}/tokens/{id}").delete(delete))
    .configure(stream_tokens::configure);
}

/// `{"error", "error_description"}`, the shape of every Keyframe JSON error.
#[derive(Debug)]
pub struct ApiFailure(ApiError, Option<(StatusCode, &'static str)>);

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<ApiError> for ApiFailure {
    fn from(error: ApiError) -> Self {
        ApiFailure(error, None)
    }
}

impl From<Error> for ApiFailure {
    fn from(error: Error) -> Self {
        ApiFailure(ApiError::Internal(error), None)
    }
}

impl ResponseError for ApiFailure {
    fn status_code(&self) -> StatusCode {
        if let Some((status, _)) = self.1 {
            return status;
        }
        match &self.0 {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Internal(Error::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (code, description) = match (&self.1, &self.0) {
            (Some((_, code)), e) => (*code, e.to_string()),
            (None, ApiError::Unauthorized(m)) => ("invalid_token", m.clone()),
            (None, ApiError::Forbidden(m) | ApiError::InsufficientScope(m)) => {
                ("insufficient_scope", m.clone())
            }
            (None, ApiError::NotFound(m)) => ("not_found", m.clone()),
            (None, ApiError::Invalid(m)) => ("invalid_request", m.clone()),
            (None, ApiError::Internal(error)) => {
                tracing::error!(%error, "API request failed");
                (
                    "server_error",
                    "the server could not handle the request".to_owned(),
                )
            }
        };
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        match &self.0 {
            // RFC 6750 §3.
            ApiError::Unauthorized(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!("Bearer realm=\"keyframe\", error=\"{code}\""),
                ));
            }
            // RFC 6750 §3.1: name the scope that would do.
            ApiError::InsufficientScope(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(
                        "Bearer realm=\"keyframe\", error=\"insufficient_scope\", scope=\"{}\"",
                        api::MANAGE_SCOPE
                    ),
                ));
            }
            _ => {}
        }
        response.json(json!({ "error": code, "error_description": description }))
    }
}

fn tenant_of(raw: &str) -> Result<TenantId, ApiFailure> {
    TenantId::parse(raw).map_err(|_| ApiError::NotFound(format!("no tenant {raw}")).into())
}

/// Runs `f` for the caller, after authenticating the bearer token.
async fn as_principal<T, F>(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    f: F,
) -> Result<T, ApiFailure>
where
    T: Send + 'static,
    F: AsyncFnOnce(&mut Conn, &Principal, i64) -> Result<T, ApiError> + Send + 'static,
{
    let token = bearer(req).ok_or_else(|| {
        ApiError::Unauthorized("send a token as Authorization: Bearer <token>".into())
    })?;
    let state = state.clone();
    let outcome = state
        .store
        .clone()
        .run(async move |conn| {
            let now = state.clock.now();
            let principal = state
                .tokens
                .principal(conn, &token, now)
                .await?
                .ok_or_else(|| {
                    ApiError::Unauthorized("the token is invalid, expired or revoked".into())
                })?;
            f(conn, &principal, now).await
        })
        .await;
    Ok(outcome?)
}

fn created(token: &api::ApiToken, secret: &crate::secrets::PlainSecret) -> serde_json::Value {
    let mut body = json!(token);
    body["token"] = json!(secret.expose());
    body
}

async fn list(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    let tenant = tenant_of(&path.into_inner())?;
    let tokens = as_principal(&req, &state, async move |conn, principal, _| {
        api::list(conn, principal, &tenant).await
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "tokens": tokens })))
}

async fn create(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    let tenant = tenant_of(&path.into_inner())?;
    let new: NewApiToken = read_json(&req, payload, state.max_body_bytes)
        .await
        .map_err(|r| {
            ApiFailure(
                ApiError::Invalid(r.message),
                Some((
                    r.status,
                    if r.status == StatusCode::BAD_REQUEST {
                        "invalid_request"
                    } else {
                        r.error
                    },
                )),
            )
        })?;
    let body = as_principal(&req, &state, async move |conn, principal, now| {
        let (token, secret) = api::create(conn, principal, &tenant, new, now).await?;
        Ok(created(&token, &secret))
    })
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

async fn renew(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    let (tenant, id) = path.into_inner();
    let tenant = tenant_of(&tenant)?;
    let body = as_principal(&req, &state, async move |conn, principal, _| {
        let (token, secret) = api::renew(conn, principal, &tenant, &id).await?;
        Ok(created(&token, &secret))
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

async fn delete(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiFailure> {
    let (tenant, id) = path.into_inner();
    let tenant = tenant_of(&tenant)?;
    as_principal(&req, &state, async move |conn, principal, _| {
        api::delete(conn, principal, &tenant, &id).await
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
