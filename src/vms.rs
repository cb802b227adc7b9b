//! The VideoManager Pro-compatible auth API: the same token service behind the paths and JSON
//! shapes that existing integrations expect. No token logic lives here.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clients::{Client, GrantType, KnownClients};
use crate::db::Conn;
use crate::error;
use crate::http::endpoint::Endpoint;
use crate::http::read_json;
use crate::startup::AppState;
use crate::tokens::error::OAuthError;
use crate::tokens::{api, GrantRequest, TokenResponse};

/// The built-in first-party client these endpoints act for.
pub const CLIENT_ID: &str = "keyframe-vms-api";
const CLIENT_NAME: &str = "VideoManager-compatible API (built in)";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(Endpoint::new("/v1/vms/auth/login").post(login))
        .service(Endpoint::new("/v1/vms/auth/refresh/{video_manager_id}").post(refresh))
        .service(Endpoint::new("/v1/vms").get(list));
}

pub async fn builtin_client(
    known: &KnownClients,
    conn: &mut Conn,
    now: i64,
) -> Result<Client, error::Error> {
    known
        .builtin(
            conn,
            CLIENT_ID,
            CLIENT_NAME,
            &[GrantType::Password, GrantType::RefreshToken],
            now,
        )
        .await
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefreshBody {
    refresh_token: String,
}

#[derive(Serialize)]
struct VideoManager {
    id: String,
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuthResponse {
    access_token: String,
    refresh_token: String,
    video_manager_list: Vec<VideoManager>,
    valid_for_video_manager: String,
}

impl From<TokenResponse> for AuthResponse {
    fn from(pair: TokenResponse) -> Self {
        AuthResponse {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token.unwrap_or_default(),
            video_manager_list: pair
                .tenants
                .into_iter()
                .map(|t| VideoManager {
                    id: t.id.to_string(),
                    name: t.name,
                })
                .collect(),
            valid_for_video_manager: pair.tenant.to_string(),
        }
    }
}

/// `{"error", "message"}` with the status the VideoManager API uses for each case.
#[derive(Debug)]
pub struct VmsError {
    status: StatusCode,
    error: &'static str,
    message: String,
    retry_after: Option<i64>,
}

impl VmsError {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl std::fmt::Display for VmsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

impl ResponseError for VmsError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"keyframe\""));
        }
        response.json(json!({ "error": self.error, "message": self.message }))
    }
}

impl From<OAuthError> for VmsError {
    fn from(error: OAuthError) -> Self {
        let message = error.description();
        match error {
            OAuthError::InvalidGrant(_) => {
                VmsError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
            OAuthError::Locked { retry_after } => VmsError {
                retry_after: Some(retry_after),
                ..VmsError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
            },
            OAuthError::ForeignTenant(_) => {
                VmsError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
            OAuthError::InvalidRequest(_) => {
                VmsError::new(StatusCode::BAD_REQUEST, "bad_request", message)
            }
            OAuthError::TooLarge(_) => {
                VmsError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            OAuthError::Unavailable(_) => VmsError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                message,
            ),
            other => {
                tracing::error!(error = %other, "VideoManager API request failed");
                VmsError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "the server could not handle the request",
                )
            }
        }
    }
}

impl From<error::Error> for VmsError {
    fn from(error: error::Error) -> Self {
        OAuthError::from(error).into()
    }
}

/// A JSON body of type `T`, or the VideoManager API's error for it.
async fn json_body<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, VmsError> {
    read_json(req, payload, limit)
        .await
        .map_err(|r| VmsError::new(r.status, r.error, r.message))
}

fn respond(pair: TokenResponse) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(AuthResponse::from(pair))
}

/// `POST /v1/vms/auth/login`: a pair for the user's default VideoManager.
async fn login(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, VmsError> {
    let body: LoginBody = json_body(&req, payload, state.max_body_bytes).await?;
    let source = state.proxies.source(&req);
    let _turn = crate::passwords::turn().await;
    let pair = state
        .store
        .clone()
        .run(async move |conn| {
            let client = builtin_client(&state.clients, conn, state.clock.now()).await?;
            let request = GrantRequest::Password {
                username: body.username,
                password: body.password,
                scope: None,
                tenant: None,
                source,
            };
            Ok::<_, VmsError>(
                state
                    .tokens
                    .grant(conn, &client, request, state.clock.now())
                    .await?,
            )
        })
        .await?;
    Ok(respond(pair))
}

/// `POST /v1/vms/auth/refresh/{videoManagerId}`: rotates the refresh token into a pair for
/// that VideoManager.
async fn refresh(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, VmsError> {
    let body: RefreshBody = json_body(&req, payload, state.max_body_bytes).await?;
    let video_manager = path.into_inner();
    let pair = state
        .store
        .clone()
        .run(async move |conn| {
            let client = builtin_client(&state.clients, conn, state.clock.now()).await?;
            let request = GrantRequest::Refresh {
                refresh_token: body.refresh_token,
                scope: None,
                tenant: Some(video_manager),
            };
            state
                .tokens
                .grant(conn, &client, request, state.clock.now())
                .await
                .map_err(|e| match e {
                    // A path that is not even a tenant id names no VideoManager the user belongs to.
                    OAuthError::InvalidRequest(m) => {
                        VmsError::new(StatusCode::FORBIDDEN, "forbidden", m)
                    }
                    other => other.into(),
                })
        })
        .await?;
    Ok(respond(pair))
}

/// `GET /v1/vms` with a Bearer access token: the VideoManagers its user may use.
async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, VmsError> {
    let unauthorized = |m: &str| VmsError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let token = crate::http::bearer(&req)
        .ok_or_else(|| unauthorized("send the access token as Authorization: Bearer <token>"))?;
    let answer = state
        .store
        .clone()
        .run(async move |conn| {
            // Any bearer Keyframe issues: an access token, or an API token.
            let Some(principal) = state
                .tokens
                .principal(conn, &token, state.clock.now())
                .await?
            else {
                return Err(unauthorized("the token is invalid, expired or revoked"));
            };
            let list: Vec<VideoManager> = api::usable_tenants(conn, &principal)
                .await?
                .ok_or_else(|| unauthorized("the user no longer exists"))?
                .into_iter()
                .map(|t| VideoManager {
                    id: t.id.to_string(),
                    name: t.name,
                })
                .collect();
            Ok(json!({ "videoManagerList": list, "validForVideoManager": principal.tenant }))
        })
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(answer))
}
