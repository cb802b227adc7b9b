//! Browser pages: the shared machinery (headers, CSRF, cookies, templates) and the handlers.

pub mod consent;
pub mod cookies;
pub mod login;
pub mod tokens;

use actix_web::cookie::Cookie;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;

use crate::authorization::AuthorizationRequest;
use crate::db::Conn;
use crate::error::Error;
use crate::form::Form;
use crate::secrets::PlainSecret;
use crate::sessions;
use crate::startup::AppState;
use crate::tenants::TenantId;
use crate::users::{self, SignInError, User};

const STYLESHEET: &str = include_str!("../templates/static/keyframe.css");
const COPY_SCRIPT: &str = include_str!("../templates/static/copy.js");

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub action: &'static str,
    pub client_name: String,
    pub request: String,
    pub csrf: String,
    pub username: String,
    pub error: Option<String>,
}

pub struct ScopeView {
    pub name: String,
    pub words: String,
}

pub struct TenantOption {
    pub id: String,
    pub name: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage {
    pub client_name: String,
    pub username: String,
    pub scopes: Vec<ScopeView>,
    pub tenants: Vec<TenantOption>,
    pub request: String,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub title: String,
    pub message: String,
}

impl ConsentPage {
    pub fn new(
        request: &AuthorizationRequest,
        query: &str,
        user: &User,
        preselect: &TenantId,
        csrf: String,
    ) -> Self {
        ConsentPage {
            client_name: request.client.name.clone(),
            username: user.username.to_string(),
            scopes: request
                .scopes
                .iter()
                .map(|s| ScopeView {
                    name: s.clone(),
                    words: describe_scope(s),
                })
                .collect(),
            tenants: user
                .tenants
                .iter()
                .map(|m| TenantOption {
                    id: m.id.to_string(),
                    name: m.name.clone(),
                    selected: &m.id == preselect,
                })
                .collect(),
            request: query.to_owned(),
            csrf,
        }
    }
}

/// A scope in words: `video:read` reads "View your video". Unknown shapes are named as they are.
pub fn describe_scope(scope: &str) -> String {
    if scope == crate::tokens::api::MANAGE_SCOPE {
        // Consent must say plainly that this one outlives the sign-in.
        return "Create, renew and revoke your long-lived API tokens".into();
    }
    let (resource, action) = match scope.split_once(':') {
        Some((resource, action)) => (resource.replace(['_', '-', '.'], " "), action),
        None => return format!("Use “{scope}”"),
    };
    match action {
        "read" | "view" => format!("View your {resource}"),
        "write" | "edit" => format!("Create and change your {resource}"),
        "delete" => format!("Delete your {resource}"),
        "admin" | "manage" => format!("Manage all {resource} settings"),
        other => format!("{} your {resource}", capitalize(other)),
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

/// A page with the headers every sign-in page sends: no framing (clickjacking on consent), no
/// referrer (the query carries state), no caching, and a CSP that allows our stylesheet and
/// form posts to us (and to where the flow ends, as browsers check redirects after a post).
pub fn page(
    status: StatusCode,
    template: &impl Template,
    form_target: Option<&str>,
    cookies: Vec<Cookie<'static>>,
) -> HttpResponse {
    render(status, template, form_target, false, cookies)
}

/// A page that may load our own script (the token page's copy button; it works without).
pub fn page_with_script(
    status: StatusCode,
    template: &impl Template,
    cookies: Vec<Cookie<'static>>,
) -> HttpResponse {
    render(status, template, None, true, cookies)
}

fn render(
    status: StatusCode,
    template: &impl Template,
    form_target: Option<&str>,
    script: bool,
    cookies: Vec<Cookie<'static>>,
) -> HttpResponse {
    let html = match template.render() {
        Ok(html) => html,
        Err(error) => {
            tracing::error!(%error, "template failed to render");
            return HttpResponse::InternalServerError().body("the page could not be rendered");
        }
    };
    let form_action = match form_target.and_then(csp_source) {
        Some(source) => format!("'self' {source}"),
        None => "'self'".into(),
    };
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; \
                 frame-ancestors 'none'; base-uri 'none'{}",
                if script { "; script-src 'self'" } else { "" }
            ),
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    for cookie in cookies {
        response.cookie(cookie);
    }
    response.body(html)
}

pub fn message(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    message_with_cookies(status, title, message, Vec::new())
}

pub fn message_with_cookies(
    status: StatusCode,
    title: &str,
    message: &str,
    cookies: Vec<Cookie<'static>>,
) -> HttpResponse {
    page(
        status,
        &MessagePage {
            title: title.into(),
            message: message.into(),
        },
        None,
        cookies,
    )
}

/// A redirect (to the client or back into the flow) that nothing may cache.
pub fn redirect(status: StatusCode, location: &str, cookies: Vec<Cookie<'static>>) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    for cookie in cookies {
        response.cookie(cookie);
    }
    response.finish()
}

/// The CSP source for a redirect URI: its origin, or its scheme for native-app schemes.
fn csp_source(uri: &str) -> Option<String> {
    let parsed = url::Url::parse(uri).ok()?;
    match parsed.host_str() {
        Some(_) => Some(parsed.origin().ascii_serialization()),
        None => Some(format!("{}:", parsed.scheme())),
    }
}

/// A form posted by one of the pages, CSRF-checked; otherwise the error page to answer.
pub async fn checked_form(
    req: &HttpRequest,
    payload: actix_web::web::Payload,
    state: &AppState,
) -> Result<Form, HttpResponse> {
    let form = crate::oauth::form::read(req, payload, state.max_body_bytes)
        .await
        .map_err(|e| {
            message(
                StatusCode::BAD_REQUEST,
                "The form could not be read",
                &e.description(),
            )
        })?;
    if !state.cookies().csrf_ok(req, form.get("csrf")) {
        return Err(message(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "For your security the form could not be accepted. Go back, reload the page and try again.",
        ));
    }
    Ok(form)
}

/// Why a login form was refused, as the page answers it.
pub struct Refusal {
    pub status: StatusCode,
    pub message: &'static str,
    /// Seconds until a locked sign-in may be tried again.
    pub retry_after: Option<i64>,
}

impl Refusal {
    /// Adds `Retry-After` to the page that tells of the refusal.
    pub fn apply(&self, mut response: HttpResponse) -> HttpResponse {
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(seconds));
        }
        response
    }
}

/// The outcome of a login form.
pub enum SignIn {
    /// The new session's cookie value.
    Started(PlainSecret),
    /// What the login page says, with its status. It never says whether the user exists.
    Refused(Refusal),
}

/// Checks the credentials with the same rules and lockout as the password grant, and starts a
/// session (a new id every time, so a planted cookie is worthless). The session the browser
/// came with, if any, ends: a copy of the old cookie must not outlive the new sign-in.
pub async fn sign_in(
    state: &AppState,
    conn: &mut Conn,
    previous: Option<&str>,
    username: &str,
    password: &str,
    source: &str,
    now: i64,
) -> Result<SignIn, Error> {
    let lockout = &state.tokens.settings;
    match users::sign_in(conn, lockout, username, password, source, now).await {
        Ok(user) => {
            if let Some(previous) = previous {
                sessions::end(conn, previous).await?;
            }
            Ok(SignIn::Started(
                sessions::start(conn, &user, state.tokens.settings.session_ttl, now).await?,
            ))
        }
        Err(SignInError::Locked { retry_after }) => Ok(SignIn::Refused(Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "Too many failed sign-ins. Wait a while, then try again.",
            retry_after: Some(retry_after),
        })),
        Err(SignInError::Invalid) => Ok(SignIn::Refused(Refusal {
            status: StatusCode::UNAUTHORIZED,
            message: "The username or password is not right.",
            retry_after: None,
        })),
        Err(SignInError::Failed(error)) => Err(error),
    }
}

/// What a successful sign-in sets: the new session, and a new CSRF cookie for after it ends.
pub fn signed_in_cookies(state: &AppState, session: &PlainSecret) -> Vec<Cookie<'static>> {
    let cookies = state.cookies();
    vec![
        cookies.session(session.expose(), state.tokens.settings.session_ttl),
        cookies.fresh_csrf().1,
    ]
}

pub async fn copy_script() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/javascript; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(COPY_SCRIPT)
}

pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLESHEET)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_in_words() {
        assert_eq!(describe_scope("video:read"), "View your video");
        assert_eq!(
            describe_scope("live_stream:write"),
            "Create and change your live stream"
        );
        assert_eq!(describe_scope("analytics:export"), "Export your analytics");
        assert_eq!(describe_scope("openid"), "Use “openid”");
        assert_eq!(
            describe_scope("keyframe:tokens"),
            "Create, renew and revoke your long-lived API tokens"
        );
    }

    #[test]
    fn csp_sources_for_redirect_uris() {
        assert_eq!(
            csp_source("https://app.example:8443/cb?x=1").as_deref(),
            Some("https://app.example:8443")
        );
        assert_eq!(
            csp_source("com.example.app:/oauth").as_deref(),
            Some("com.example.app:")
        );
    }
}
