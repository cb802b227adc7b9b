//! `GET /oauth/authorize` and the steps of the browser flow that every page shares.

use actix_web::http::StatusCode;
use actix_web::{web as aweb, HttpRequest, HttpResponse};

use crate::authorization::{AuthorizationRequest, Prompt, Refusal};
use crate::db::Conn;
use crate::error::Error;
use crate::sessions;
use crate::startup::AppState;
use crate::tenants::TenantId;
use crate::users::User;
use crate::web::{self, ConsentPage, LoginPage};

/// What the flow does next.
pub enum Step {
    /// To the client (or back into the flow).
    Redirect(String),
    Login {
        client_name: String,
        query: String,
        username: String,
        error: Option<(StatusCode, String)>,
        form_target: String,
    },
    Consent {
        request: Box<AuthorizationRequest>,
        query: String,
        user: Box<User>,
        tenant: TenantId,
    },
    Message(StatusCode, &'static str, String),
}

impl From<Refusal> for Step {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Page(message) => Step::Message(
                StatusCode::BAD_REQUEST,
                "This sign-in link does not work",
                message,
            ),
            Refusal::Redirect(location) => Step::Redirect(location),
            Refusal::Internal(error) => internal(error),
        }
    }
}

pub fn internal(error: Error) -> Step {
    tracing::error!(%error, "sign-in step failed");
    Step::Message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Something went wrong",
        "Please try again in a moment.".into(),
    )
}

/// Validates the request and finds the signed-in user (a blocking step).
pub async fn start(
    state: &AppState,
    conn: &mut Conn,
    query: &str,
    session: Option<&str>,
    now: i64,
) -> Result<Step, Error> {
    let request = match AuthorizationRequest::parse(conn, query, &state.tokens.issuer).await {
        Ok(request) => request,
        Err(refusal) => return Ok(refusal.into()),
    };
    // prompt=login asks for a fresh sign-in whatever the session (OpenID Connect Core §3.1.2.1).
    let user = match (request.prompt, session) {
        (Prompt::Login, _) | (_, None) => None,
        (_, Some(cookie)) => sessions::user(conn, cookie, now).await?,
    };
    match user {
        None if request.prompt == Prompt::None => Ok(Step::Redirect(request.error_redirect(
            "login_required",
            "the user is not signed in",
            &state.tokens.issuer,
        ))),
        None => Ok(login_step(&request, query, String::new(), None)),
        Some(user) => after_sign_in(state, conn, request, query, user, now).await,
    }
}

pub fn login_step(
    request: &AuthorizationRequest,
    query: &str,
    username: String,
    error: Option<(StatusCode, String)>,
) -> Step {
    Step::Login {
        client_name: request.client.name.clone(),
        query: query.to_owned(),
        username,
        error,
        form_target: request.redirect_uri.clone(),
    }
}

/// With a signed-in user: a code at once when consent was given before (and not asked for
/// again), otherwise the consent page (or `consent_required` for prompt=none).
pub async fn after_sign_in(
    state: &AppState,
    conn: &mut Conn,
    request: AuthorizationRequest,
    query: &str,
    user: User,
    now: i64,
) -> Result<Step, Error> {
    let issuer = &state.tokens.issuer;
    let tenant = match request.tenant_for(&user) {
        Ok(tenant) => tenant,
        Err(problem) => {
            return Ok(Step::Redirect(request.error_redirect(
                "invalid_request",
                &problem.to_string(),
                issuer,
            )))
        }
    };
    if request.prompt != Prompt::Consent && request.consent_remembered(conn, &user, &tenant).await?
    {
        let code = state
            .tokens
            .issue_code(conn, &request, &user, &tenant, now)
            .await?;
        return Ok(Step::Redirect(request.code_redirect(code.expose(), issuer)));
    }
    if request.prompt == Prompt::None {
        return Ok(Step::Redirect(request.error_redirect(
            "consent_required",
            "the user has not consented yet",
            issuer,
        )));
    }
    Ok(Step::Consent {
        request: Box::new(request),
        query: query.to_owned(),
        user: Box::new(user),
        tenant,
    })
}

/// Turns a step into a response. `after_post`: redirects are 303 (See Other) after a form.
pub fn respond(req: &HttpRequest, state: &AppState, step: Step, after_post: bool) -> HttpResponse {
    let redirect_status = if after_post {
        StatusCode::SEE_OTHER
    } else {
        StatusCode::FOUND
    };
    match step {
        Step::Redirect(location) => web::redirect(redirect_status, &location, Vec::new()),
        Step::Message(status, title, message) => web::message(status, title, &message),
        Step::Login {
            client_name,
            query,
            username,
            error,
            form_target,
        } => {
            let (csrf, cookie) = state.cookies().csrf_token(req);
            let (status, error) = match error {
                Some((status, message)) => (status, Some(message)),
                None => (StatusCode::OK, None),
            };
            let page = LoginPage {
                action: "/oauth/authorize/login",
                client_name,
                request: query,
                csrf,
                username,
                error,
            };
            web::page(
                status,
                &page,
                Some(&form_target),
                cookie.into_iter().collect(),
            )
        }
        Step::Consent {
            request,
            query,
            user,
            tenant,
        } => {
            let (csrf, cookie) = state.cookies().csrf_token(req);
            let page = ConsentPage::new(&request, &query, &user, &tenant, csrf);
            web::page(
                StatusCode::OK,
                &page,
                Some(&request.redirect_uri),
                cookie.into_iter().collect(),
            )
        }
    }
}

/// `GET /oauth/authorize` (RFC 6749 §4.1.1).
pub async fn authorize(req: HttpRequest, state: aweb::Data<AppState>) -> HttpResponse {
    let query = req.query_string().to_owned();
    let session = state.cookies().session_value(&req);
    let worker = state.clone();
    let step = worker
        .store
        .clone()
        .run(async move |conn| {
            start(
                &worker,
                conn,
                &query,
                session.as_deref(),
                worker.clock.now(),
            )
            .await
        })
        .await;
    let step = match step {
        Ok(step) => step,
        Err::<_, Error>(error) => internal(error),
    };
    respond(&req, &state, step, false)
}
