//! Flussonic-compatible JSON-RPC 2.0 at `POST /api/`: `Auth.CreateApiToken` (and its alias
//! `Auth.CreateAccessToken`), `Auth.RevokeToken`, and `Auth.SignUrl` for OvenMediaEngine's
//! signed URLs; one function per method.
//! Errors are JSON-RPC error objects; as Flussonic documents, a failed single call answers
//! HTTP 400 (401 and 403 for the credential), a success 200.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::db::Conn;
use crate::error::Error;
use crate::http::endpoint::Endpoint;
use crate::http::limits::{read_body, BodyError};
use crate::http::{bearer, has_media_type};
use crate::signed_url::{self, SignRequest};
use crate::startup::AppState;
use crate::tenants::url_secret;
use crate::tokens::api::{Principal, MANAGE_SCOPE};
use crate::tokens::stream::{self, NewStreamToken, ParamError, RevokeTarget, StreamError};

pub const PATH: &str = "/api/";
/// More calls than any script sends at once; a bound on the work one request can ask for.
const MAX_BATCH: usize = 100;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // Flussonic's clients post to `/api/`; `/api` is the same endpoint, not a 404.
    cfg.service(Endpoint::new(PATH).post(handle))
        .service(Endpoint::new("/api").post(handle));
}

/// JSON-RPC 2.0 §5.1's codes, and the server codes Flussonic uses for the credential.
mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    pub const UNAVAILABLE: i64 = -32000;
    pub const UNAUTHORIZED: i64 = -32001;
    pub const FORBIDDEN: i64 = -32003;
    /// The tenant lacks something an operator has to set up (a URL secret).
    pub const NOT_CONFIGURED: i64 = -32004;
}

#[derive(Debug, Clone)]
struct RpcError {
    code: i64,
    message: String,
    /// RFC 6750 §3's challenge, for the credential errors.
    challenge: Option<String>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            challenge: None,
        }
    }

    fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(code::INVALID_REQUEST, message)
    }

    fn status(&self) -> StatusCode {
        match self.code {
            code::UNAUTHORIZED => StatusCode::UNAUTHORIZED,
            code::FORBIDDEN => StatusCode::FORBIDDEN,
            code::NOT_CONFIGURED => StatusCode::CONFLICT,
            code::INTERNAL_ERROR => StatusCode::INTERNAL_SERVER_ERROR,
            code::UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn object(&self, id: &Value) -> Value {
        json!({
            "jsonrpc": "2.0",
            "error": { "code": self.code, "message": self.message },
            "id": id,
        })
    }
}

impl From<ParamError> for RpcError {
    fn from(error: ParamError) -> Self {
        RpcError::new(code::INVALID_PARAMS, error.0)
    }
}

impl From<Error> for RpcError {
    fn from(error: Error) -> Self {
        match error {
            Error::Unavailable(message) => {
                tracing::warn!(%message, "JSON-RPC call failed: the database is unavailable");
                RpcError::new(
                    code::UNAVAILABLE,
                    "temporarily unavailable: try again shortly",
                )
            }
            error => {
                tracing::error!(%error, "JSON-RPC call failed");
                RpcError::new(code::INTERNAL_ERROR, "internal error")
            }
        }
    }
}

impl From<StreamError> for RpcError {
    fn from(error: StreamError) -> Self {
        match error {
            StreamError::Params(e) => e.into(),
            StreamError::Forbidden(message) => RpcError::new(code::FORBIDDEN, message),
            StreamError::InsufficientScope(message) => RpcError {
                challenge: Some(format!(
                    "Bearer realm=\"keyframe\", error=\"insufficient_scope\", scope=\"{MANAGE_SCOPE}\""
                )),
                ..RpcError::new(code::FORBIDDEN, message)
            },
            StreamError::Internal(e) => e.into(),
        }
    }
}

/// One well-formed call. `id` is `None` for a notification (no `id` member at all).
struct Call {
    id: Option<Value>,
    method: String,
    params: Option<Value>,
}

/// JSON-RPC 2.0 §4: an object with `jsonrpc: "2.0"`, a string `method`, structured `params`
/// if any, and an `id` that is a string, a number or null if any. Anything else is refused
/// with the id it carried when that id was usable, `null` otherwise.
fn parse_call(entry: Value) -> Result<Call, (Value, RpcError)> {
    let Value::Object(mut members) = entry else {
        return Err((
            Value::Null,
            RpcError::invalid_request("a request must be a JSON object"),
        ));
    };
    let id = members.remove("id");
    let usable_id = match &id {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(v.clone()),
        Some(_) => {
            return Err((
                Value::Null,
                RpcError::invalid_request("id must be a string, a number or null"),
            ))
        }
    };
    let echo = usable_id.clone().unwrap_or(Value::Null);
    let refuse = |message: &str| Err((echo.clone(), RpcError::invalid_request(message)));
    if members.remove("jsonrpc") != Some(json!("2.0")) {
        return refuse("jsonrpc must be \"2.0\"");
    }
    let method = match members.remove("method") {
        Some(Value::String(method)) => method,
        Some(_) => return refuse("method must be a string"),
        None => return refuse("method is required"),
    };
    let params = members.remove("params");
    if params
        .as_ref()
        .is_some_and(|p| !(p.is_object() || p.is_array()))
    {
        return refuse("params must be an object or an array");
    }
    if let Some(name) = members.keys().next() {
        return Err((
            echo,
            RpcError::invalid_request(format!("a request has no member {name:?}")),
        ));
    }
    Ok(Call {
        id: usable_id,
        method,
        params,
    })
}

/// The caller, authenticated once per HTTP request and only if a call needs it.
struct Caller {
    bearer: Option<String>,
    known: Option<Result<Principal, RpcError>>,
}

impl Caller {
    async fn principal(
        &mut self,
        state: &AppState,
        conn: &mut Conn,
        now: i64,
    ) -> Result<Principal, RpcError> {
        let known = match self.known.take() {
            Some(known) => known,
            None => authenticate(state, conn, self.bearer.as_deref(), now).await,
        };
        self.known = Some(known.clone());
        known
    }
}

async fn authenticate(
    state: &AppState,
    conn: &mut Conn,
    bearer: Option<&str>,
    now: i64,
) -> Result<Principal, RpcError> {
    let Some(token) = bearer else {
        // RFC 6750 §3.1: a request without credentials gets a challenge without an error code.
        return Err(RpcError {
            challenge: Some("Bearer realm=\"keyframe\"".into()),
            ..RpcError::new(
                code::UNAUTHORIZED,
                "unauthorized: send a token as Authorization: Bearer <token>",
            )
        });
    };
    match state.tokens.principal(conn, token, now).await? {
        Some(principal) => Ok(principal),
        None => Err(RpcError {
            challenge: Some("Bearer realm=\"keyframe\", error=\"invalid_token\"".into()),
            ..RpcError::new(
                code::UNAUTHORIZED,
                "unauthorized: the token is invalid, expired or revoked",
            )
        }),
    }
}

/// Runs one call; the answer is its result or its error.
async fn dispatch(
    state: &AppState,
    conn: &mut Conn,
    caller: &mut Caller,
    call: &Call,
    now: i64,
) -> Result<Value, RpcError> {
    let method = call.method.as_str();
    match method {
        "Auth.CreateApiToken" | "Auth.CreateAccessToken" => {
            create_api_token(state, conn, caller, method, call.params.as_ref(), now).await
        }
        "Auth.RevokeToken" => {
            revoke_token(state, conn, caller, method, call.params.as_ref(), now).await
        }
        "Auth.SignUrl" => sign_url(state, conn, caller, method, call.params.as_ref(), now).await,
        _ => Err(RpcError::new(
            code::METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )),
    }
}

/// `Auth.CreateApiToken`: a stream token for the caller's tenant; the result is the token.
async fn create_api_token(
    state: &AppState,
    conn: &mut Conn,
    caller: &mut Caller,
    method: &str,
    params: Option<&Value>,
    now: i64,
) -> Result<Value, RpcError> {
    let principal = caller.principal(state, conn, now).await?;
    stream::may_manage_stream_tokens(&principal)?;
    let new =
        NewStreamToken::from_params(params, method, state.tokens.settings.stream_token_max_ttl)?;
    let token = state
        .tokens
        .issue_stream_token(conn, &principal, new, now)
        .await?;
    Ok(Value::String(token))
}

/// `Auth.RevokeToken`: by `token` or `jti`, only the tenant's own; the result is `true`.
async fn revoke_token(
    state: &AppState,
    conn: &mut Conn,
    caller: &mut Caller,
    method: &str,
    params: Option<&Value>,
    now: i64,
) -> Result<Value, RpcError> {
    let principal = caller.principal(state, conn, now).await?;
    stream::may_manage_stream_tokens(&principal)?;
    let target = RevokeTarget::from_params(params, method)?;
    state
        .tokens
        .revoke_stream_token(conn, &principal, target, now)
        .await?;
    Ok(Value::Bool(true))
}

/// `Auth.SignUrl`: an OvenMediaEngine SignedPolicy URL signed with the tenant's URL secret;
/// the result is the URL with `policy` and `signature` appended.
async fn sign_url(
    state: &AppState,
    conn: &mut Conn,
    caller: &mut Caller,
    method: &str,
    params: Option<&Value>,
    now: i64,
) -> Result<Value, RpcError> {
    let principal = caller.principal(state, conn, now).await?;
    stream::may_manage_stream_tokens(&principal)?;
    let request = SignRequest::from_params(params, method)?;
    let tenant = &principal.tenant;
    let secret = url_secret::get(conn, state.secret_key.as_ref(), tenant)
        .await?
        .ok_or_else(|| {
            RpcError::new(
                code::NOT_CONFIGURED,
                format!(
                    "tenant {tenant} has no URL secret yet: an operator makes one with \
                     `keyframe tenant url-secret {tenant} --rotate`"
                ),
            )
        })?;
    let signed = signed_url::sign(&request.url, &request.policy, &secret)
        .map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("url: {e}")))?;
    Ok(Value::String(signed))
}

/// The answer to one entry: `None` for a notification.
struct Answer {
    body: Option<Value>,
    error: Option<RpcError>,
}

async fn answer(
    state: &AppState,
    conn: &mut Conn,
    caller: &mut Caller,
    entry: Value,
    now: i64,
) -> Answer {
    let call = match parse_call(entry) {
        Ok(call) => call,
        Err((id, error)) => {
            return Answer {
                body: Some(error.object(&id)),
                error: Some(error),
            }
        }
    };
    let outcome = dispatch(state, conn, caller, &call, now).await;
    let Some(id) = call.id else {
        return Answer {
            body: None,
            error: outcome.err(),
        };
    };
    match outcome {
        Ok(result) => Answer {
            body: Some(json!({ "jsonrpc": "2.0", "result": result, "id": id })),
            error: None,
        },
        Err(error) => Answer {
            body: Some(error.object(&id)),
            error: Some(error),
        },
    }
}

fn respond(status: StatusCode, body: Option<Value>, challenge: Option<&str>) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(challenge) = challenge {
        response.insert_header((header::WWW_AUTHENTICATE, challenge.to_owned()));
    }
    match body {
        Some(body) => response.json(body),
        None => response.finish(),
    }
}

/// A refusal of the whole HTTP request, before any call could be read.
fn refuse(status: StatusCode, error: RpcError) -> HttpResponse {
    respond(status, Some(error.object(&Value::Null)), None)
}

/// JSON-RPC over HTTP accepts these media types for the request.
fn is_json(req: &HttpRequest) -> bool {
    [
        "application/json",
        "application/json-rpc",
        "application/jsonrequest",
    ]
    .iter()
    .any(|t| has_media_type(req, t))
}

async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !is_json(&req) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RpcError::invalid_request("the content type must be application/json"),
        );
    }
    let body = match read_body(payload, state.max_body_bytes).await {
        Ok(body) => body,
        Err(BodyError::TooLarge(m)) => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, RpcError::invalid_request(m))
        }
        Err(BodyError::Unreadable(m)) => {
            return refuse(StatusCode::BAD_REQUEST, RpcError::new(code::PARSE_ERROR, m))
        }
    };
    let document = match crate::json::parse(&body) {
        Ok(document) => document,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                RpcError::new(code::PARSE_ERROR, format!("parse error: {e}")),
            )
        }
    };
    let (entries, batch) = match document {
        Value::Array(entries) if entries.is_empty() => {
            return refuse(
                StatusCode::BAD_REQUEST,
                RpcError::invalid_request("an empty batch asks for nothing"),
            )
        }
        Value::Array(entries) if entries.len() > MAX_BATCH => {
            return refuse(
                StatusCode::BAD_REQUEST,
                RpcError::invalid_request(format!("a batch holds at most {MAX_BATCH} calls")),
            )
        }
        Value::Array(entries) => (entries, true),
        single => (vec![single], false),
    };
    let caller = Caller {
        bearer: bearer(&req),
        known: None,
    };
    let worker = state.clone();
    let answers = state
        .store
        .clone()
        .run(async move |conn| {
            let mut caller = caller;
            let now = worker.clock.now();
            let mut answers = Vec::with_capacity(entries.len());
            for entry in entries {
                answers.push(answer(&worker, conn, &mut caller, entry, now).await);
            }
            Ok::<_, Error>(answers)
        })
        .await;
    let answers = match answers {
        Ok(answers) => answers,
        Err(error) => {
            let error = RpcError::from(error);
            return refuse(error.status(), error);
        }
    };
    // RFC 6750 §3: a bad credential is a 401 with its challenge, whatever else the batch held.
    let challenge = answers
        .iter()
        .filter_map(|a| a.error.as_ref())
        .find_map(|e| e.challenge.clone());
    let unauthorized = answers.iter().any(|a| {
        a.error
            .as_ref()
            .is_some_and(|e| e.code == code::UNAUTHORIZED)
    });
    if batch {
        let bodies: Vec<Value> = answers.into_iter().filter_map(|a| a.body).collect();
        let status = if unauthorized {
            StatusCode::UNAUTHORIZED
        } else if bodies.is_empty() {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::OK
        };
        // §6: a batch of notifications only is answered with nothing at all.
        let body = (!bodies.is_empty()).then_some(Value::Array(bodies));
        return respond(status, body, challenge.as_deref());
    }
    let Some(single) = answers.into_iter().next() else {
        return respond(StatusCode::NO_CONTENT, None, None);
    };
    let status = match (&single.error, &single.body) {
        (Some(error), Some(_)) => error.status(),
        // §4.1: a notification is not answered, whatever became of it; but a bad credential is
        // still a 401 with its challenge (RFC 6750 §3).
        (Some(error), None) if error.code == code::UNAUTHORIZED => StatusCode::UNAUTHORIZED,
        (_, None) => StatusCode::NO_CONTENT,
        (None, Some(_)) => StatusCode::OK,
    };
    respond(status, single.body, challenge.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(entry: Value) -> (Value, i64, String) {
        match parse_call(entry.clone()) {
            Ok(_) => panic!("{entry} was accepted"),
            Err((id, error)) => (id, error.code, error.message),
        }
    }

    #[test]
    fn calls_are_objects_of_the_four_members() {
        let call =
            parse_call(json!({"jsonrpc": "2.0", "method": "m", "params": {"a": 1}, "id": 7}))
                .unwrap_or_else(|_| panic!("valid"));
        assert_eq!(call.id, Some(json!(7)));
        assert_eq!(call.method, "m");
        assert_eq!(call.params, Some(json!({"a": 1})));
        let notification = parse_call(json!({"jsonrpc": "2.0", "method": "m"}))
            .unwrap_or_else(|_| panic!("valid"));
        assert_eq!(notification.id, None);
        // An explicit null id is a call (answered with id null), not a notification.
        let null_id = parse_call(json!({"jsonrpc": "2.0", "method": "m", "id": null}))
            .unwrap_or_else(|_| panic!("valid"));
        assert_eq!(null_id.id, Some(Value::Null));

        assert_eq!(refused(json!([1])).1, code::INVALID_REQUEST);
        assert_eq!(refused(json!("x")).0, Value::Null);
        let (id, code, message) = refused(json!({"jsonrpc": "1.0", "method": "m", "id": "a"}));
        assert_eq!((id, code), (json!("a"), code::INVALID_REQUEST));
        assert!(message.contains("jsonrpc"), "{message}");
        assert!(refused(json!({"method": "m", "id": 1}))
            .2
            .contains("jsonrpc"));
        assert!(refused(json!({"jsonrpc": "2.0", "id": 1}))
            .2
            .contains("method is required"));
        assert!(refused(json!({"jsonrpc": "2.0", "method": 3, "id": 1}))
            .2
            .contains("string"));
        assert!(
            refused(json!({"jsonrpc": "2.0", "method": "m", "params": 3, "id": 1}))
                .2
                .contains("params")
        );
        let (id, _, message) = refused(json!({"jsonrpc": "2.0", "method": "m", "id": {"a": 1}}));
        assert_eq!(id, Value::Null);
        assert!(message.contains("id must be"), "{message}");
        assert!(
            refused(json!({"jsonrpc": "2.0", "method": "m", "id": 1, "extra": true}))
                .2
                .contains("extra")
        );
    }

    #[test]
    fn errors_map_to_flussonics_statuses() {
        for (code, status) in [
            (code::PARSE_ERROR, 400),
            (code::INVALID_REQUEST, 400),
            (code::METHOD_NOT_FOUND, 400),
            (code::INVALID_PARAMS, 400),
            (code::UNAUTHORIZED, 401),
            (code::FORBIDDEN, 403),
            (code::INTERNAL_ERROR, 500),
            (code::UNAVAILABLE, 503),
        ] {
            assert_eq!(RpcError::new(code, "x").status().as_u16(), status, "{code}");
        }
    }

    #[test]
    fn error_objects_carry_the_id() {
        assert_eq!(
            RpcError::new(code::METHOD_NOT_FOUND, "nope").object(&json!("q")),
            json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "nope"}, "id": "q"})
        );
    }
}
