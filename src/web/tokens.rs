//! The Token Management page: a signed-in user's view of the API tokens of one tenant, with
//! forms to create, renew and revoke (each change confirmed first). Works without JavaScript.

use actix_web::cookie::time::{Date, Month, OffsetDateTime, Time};
use actix_web::http::StatusCode;
use actix_web::{web as aweb, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use crate::db::Conn;
use crate::error::Error;

use crate::secrets::PlainSecret;
use crate::sessions;
use crate::startup::AppState;
use crate::tenants::TenantId;
use crate::tokens::api::{self, ApiError, ApiToken, Change, Kind, NewApiToken, Principal};
use crate::users::{TenantRefusal, User};
use crate::web::{self, LoginPage, TenantOption};

pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub owner: Option<String>,
    pub roles: String,
    pub created: String,
    pub last_used: String,
    pub expires: String,
    /// Whether the signed-in user may renew it (and so see a new secret).
    pub renewable: bool,
    pub revocable: bool,
}

pub struct Section {
    pub id: &'static str,
    pub title: &'static str,
    pub tokens: Vec<TokenRow>,
}

pub struct Created {
    pub verb: &'static str,
    pub name: String,
    pub secret: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
pub struct TokensPage {
    pub username: String,
    pub tenant: String,
    pub tenant_name: String,
    pub tenants: Vec<TenantOption>,
    pub is_owner: bool,
    pub sections: Vec<Section>,
    pub created: Option<Created>,
    pub error: Option<String>,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "token_confirm.html")]
pub struct ConfirmPage {
    pub title: String,
    pub explanation: String,
    pub button: &'static str,
    pub id: String,
    pub action: &'static str,
    pub tenant: String,
    pub csrf: String,
}

fn date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}

fn row(principal: &Principal, token: &ApiToken) -> TokenRow {
    TokenRow {
        renewable: api::may_change(principal, token, Change::Renew),
        revocable: api::may_change(principal, token, Change::Revoke),
        id: token.id.clone(),
        name: token.name.clone(),
        owner: token.owner.as_ref().map(|o| o.username.clone()),
        roles: match token.kind {
            Kind::Personal => "the owner's role".into(),
            Kind::System => token
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        },
        created: date(token.created_at),
        last_used: token.last_used_at.map_or_else(|| "never".into(), date),
        expires: token.expires_at.map_or_else(|| "never".into(), date),
    }
}

/// The end (UTC) of a `YYYY-MM-DD` day, as a date input sends it.
fn end_of_day(raw: &str) -> Option<i64> {
    let mut parts = raw.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month = Month::try_from(parts.next()?.parse::<u8>().ok()?).ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(
        date.with_time(Time::from_hms(23, 59, 59).ok()?)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// The signed-in user acting in a tenant (the requested one, else their default).
fn principal(user: &User, tenant: Option<&str>) -> Result<Principal, &'static str> {
    let requested = tenant
        .map(TenantId::parse)
        .transpose()
        .map_err(|_| "There is no such VideoManager.")?;
    let membership = user
        .choose_tenant(requested.as_ref())
        .map_err(|refusal| match refusal {
            TenantRefusal::NotAMember(_) => "You are not a member of that VideoManager.",
            TenantRefusal::NoTenant => "You are not a member of any VideoManager.",
        })?;
    Ok(Principal {
        tenant: membership.id.clone(),
        user_id: Some(user.id.clone()),
        username: Some(user.username.to_string()),
        roles: vec![membership.role],
        credential: api::Credential::Session,
        expires_at: None,
        created_at: None,
    })
}

async fn render_page(
    conn: &mut Conn,
    user: &User,
    principal: &Principal,
    created: Option<Created>,
    error: Option<String>,
    csrf: String,
) -> Result<TokensPage, ApiError> {
    let tokens = api::list(conn, principal, &principal.tenant).await?;
    let mine = |t: &&ApiToken| {
        t.kind == Kind::Personal && t.owner.as_ref().is_some_and(|o| o.id == user.id)
    };
    let mut sections = vec![Section {
        id: "my-tokens",
        title: "My tokens",
        tokens: tokens
            .iter()
            .filter(mine)
            .map(|t| row(principal, t))
            .collect(),
    }];
    // `api::list` returned only what this user may see: others' personal tokens to admins and
    // owners, system tokens to owners.
    let others: Vec<TokenRow> = tokens
        .iter()
        .filter(|t| t.kind == Kind::Personal && !mine(t))
        .map(|t| row(principal, t))
        .collect();
    if principal.is_admin_or_owner() {
        sections.push(Section {
            id: "user-tokens",
            title: "Organization user tokens",
            tokens: others,
        });
    }
    if principal.is_owner() {
        sections.push(Section {
            id: "system-tokens",
            title: "System tokens",
            tokens: tokens
                .iter()
                .filter(|t| t.kind == Kind::System)
                .map(|t| row(principal, t))
                .collect(),
        });
    }
    Ok(TokensPage {
        username: user.username.to_string(),
        tenant: principal.tenant.to_string(),
        tenant_name: user
            .tenants
            .iter()
            .find(|m| m.id == principal.tenant)
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        tenants: user
            .tenants
            .iter()
            .map(|m| TenantOption {
                id: m.id.to_string(),
                name: m.name.clone(),
                selected: m.id == principal.tenant,
            })
            .collect(),
        is_owner: principal.is_owner(),
        sections,
        created,
        error,
        csrf,
    })
}

/// What a blocking step of these pages ends in.
enum Outcome {
    Page(StatusCode, Box<TokensPage>),
    Confirm(Box<ConfirmPage>),
    SignIn(String),
    Redirect(String),
    Message(StatusCode, &'static str, String),
}

fn sign_in_location(next: &str) -> String {
    format!(
        "/login?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("next", next)
            .finish()
    )
}

async fn run<F>(req: &HttpRequest, state: &aweb::Data<AppState>, next: String, f: F) -> HttpResponse
where
    F: AsyncFnOnce(&mut Conn, &User, String, i64) -> Result<Outcome, Error> + Send + 'static,
{
    let (csrf, cookie) = state.cookies().csrf_token(req);
    let session = state.cookies().session_value(req);
    let worker = state.clone();
    let outcome = worker
        .store
        .clone()
        .run(async move |conn| {
            let now = worker.clock.now();
            let user = match session.as_deref() {
                Some(cookie) => sessions::user(conn, cookie, now).await?,
                None => None,
            };
            match user {
                Some(user) => f(conn, &user, csrf, now).await,
                None => Ok(Outcome::SignIn(sign_in_location(&next))),
            }
        })
        .await;
    let cookies: Vec<_> = cookie.into_iter().collect();
    match outcome {
        Ok(Outcome::Page(status, page)) => web::page_with_script(status, page.as_ref(), cookies),
        Ok(Outcome::Confirm(page)) => web::page(StatusCode::OK, page.as_ref(), None, cookies),
        Ok(Outcome::SignIn(location) | Outcome::Redirect(location)) => {
            web::redirect(StatusCode::SEE_OTHER, &location, cookies)
        }
        Ok(Outcome::Message(status, title, message)) => web::message(status, title, &message),
        Err::<_, Error>(error) => {
            tracing::error!(%error, "token page failed");
            web::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Something went wrong",
                "Please try again in a moment.",
            )
        }
    }
}

/// An API refusal shown on the page itself (the form stays usable).
async fn refused(
    conn: &mut Conn,
    user: &User,
    principal: &Principal,
    error: ApiError,
    csrf: String,
) -> Result<Outcome, Error> {
    let status = match &error {
        ApiError::Forbidden(_) | ApiError::InsufficientScope(_) => StatusCode::FORBIDDEN,
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::Invalid(_) | ApiError::Unauthorized(_) => StatusCode::BAD_REQUEST,
        ApiError::Internal(_) => return Err(Error::Internal(error.to_string())),
    };
    let page = render_page(conn, user, principal, None, Some(error.to_string()), csrf)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Outcome::Page(status, Box::new(page)))
}

async fn created_page(
    conn: &mut Conn,
    user: &User,
    principal: &Principal,
    verb: &'static str,
    token: &ApiToken,
    secret: &PlainSecret,
    csrf: String,
) -> Result<Outcome, Error> {
    let created = Created {
        verb,
        name: token.name.clone(),
        secret: secret.expose().to_owned(),
    };
    let page = render_page(conn, user, principal, Some(created), None, csrf)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Outcome::Page(StatusCode::OK, Box::new(page)))
}

#[derive(Deserialize)]
pub struct TenantQuery {
    tenant: Option<String>,
}

/// `GET /tokens?tenant=...`
pub async fn show(
    req: HttpRequest,
    query: aweb::Query<TenantQuery>,
    state: aweb::Data<AppState>,
) -> HttpResponse {
    let tenant = query.into_inner().tenant;
    let next = format!(
        "/tokens{}",
        tenant
            .as_deref()
            .map(|t| format!("?tenant={t}"))
            .unwrap_or_default()
    );
    run(&req, &state, next, async move |conn, user, csrf, _| {
        let principal = match principal(user, tenant.as_deref()) {
            Ok(p) => p,
            Err(problem) => {
                return Ok(Outcome::Message(
                    StatusCode::FORBIDDEN,
                    "Not available",
                    problem.into(),
                ))
            }
        };
        match render_page(conn, user, &principal, None, None, csrf).await {
            Ok(page) => Ok(Outcome::Page(StatusCode::OK, Box::new(page))),
            Err(error) => refused(conn, user, &principal, error, String::new()).await,
        }
    })
    .await
}

/// `POST /tokens/create`
pub async fn create(
    req: HttpRequest,
    payload: aweb::Payload,
    state: aweb::Data<AppState>,
) -> HttpResponse {
    let form = match web::checked_form(&req, payload, &state).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let tenant = form.get("tenant").map(str::to_owned);
    let roles: Vec<String> = ["role_owner", "role_admin", "role_member"]
        .iter()
        .filter_map(|k| form.get(k).map(str::to_owned))
        .collect();
    let expires = form.get("expires").map(str::to_owned);
    let name = form.get("name").unwrap_or("").to_owned();
    let kind = form.get("kind").unwrap_or("personal").to_owned();
    run(
        &req,
        &state,
        "/tokens".into(),
        async move |conn, user, csrf, now| {
            let principal = match principal(user, tenant.as_deref()) {
                Ok(p) => p,
                Err(problem) => {
                    return Ok(Outcome::Message(
                        StatusCode::FORBIDDEN,
                        "Not available",
                        problem.into(),
                    ))
                }
            };
            let expires_at = match expires.as_deref() {
                None => None,
                Some(raw) => match end_of_day(raw) {
                    Some(t) => Some(t),
                    None => {
                        return refused(
                            conn,
                            user,
                            &principal,
                            ApiError::Invalid("the expiry date is not a date".into()),
                            csrf,
                        )
                        .await
                    }
                },
            };
            let new = NewApiToken::from_form(name, kind, roles, expires_at);
            match api::create(conn, &principal, &principal.tenant.clone(), new, now).await {
                Ok((token, secret)) => {
                    created_page(conn, user, &principal, "Created", &token, &secret, csrf).await
                }
                Err(error) => refused(conn, user, &principal, error, csrf).await,
            }
        },
    )
    .await
}

/// `GET /tokens/{id}/{renew|revoke}?tenant=...`: asks before doing it.
pub async fn confirm(
    req: HttpRequest,
    path: aweb::Path<(String, String)>,
    query: aweb::Query<TenantQuery>,
    state: aweb::Data<AppState>,
) -> HttpResponse {
    let (id, action) = path.into_inner();
    let tenant = query.into_inner().tenant;
    let action: &'static str = match action.as_str() {
        "renew" => "renew",
        "revoke" => "revoke",
        _ => return crate::http::not_found().await,
    };
    run(&req, &state, "/tokens".into(), async move |conn, user, csrf, _| {
        let principal = match principal(user, tenant.as_deref()) {
            Ok(p) => p,
            Err(problem) => return Ok(Outcome::Message(StatusCode::FORBIDDEN, "Not available", problem.into())),
        };
        let tokens = match api::list(conn, &principal, &principal.tenant).await {
            Ok(tokens) => tokens,
            Err(error) => return refused(conn, user, &principal, error, csrf).await,
        };
        let Some(token) = tokens.into_iter().find(|t| t.id == id) else {
            return Ok(Outcome::Message(StatusCode::NOT_FOUND, "No such token", "It may have been revoked already.".into()));
        };
        let change = if action == "renew" { Change::Renew } else { Change::Revoke };
        if !api::may_change(&principal, &token, change) {
            let why = if change == Change::Renew && token.kind == Kind::Personal {
                "A personal token is renewed only by the user it belongs to."
            } else {
                "Your role does not allow changing this token."
            };
            return Ok(Outcome::Message(StatusCode::FORBIDDEN, "Not allowed", why.into()));
        }
        let (title, explanation, button) = match action {
            "renew" => (
                format!("Renew “{}”?", token.name),
                "A new secret replaces the current one, which stops working at once. The name and roles stay.".to_owned(),
                "Renew token",
            ),
            _ => (
                format!("Revoke “{}”?", token.name),
                "The token stops working at once and cannot be recovered.".to_owned(),
                "Revoke token",
            ),
        };
        Ok(Outcome::Confirm(Box::new(ConfirmPage { title, explanation, button, id: token.id, action, tenant: principal.tenant.to_string(), csrf })))
    })
    .await
}

/// `POST /tokens/{id}/renew` and `POST /tokens/{id}/revoke`.
pub async fn change(
    req: HttpRequest,
    path: aweb::Path<(String, String)>,
    payload: aweb::Payload,
    state: aweb::Data<AppState>,
) -> HttpResponse {
    let (id, action) = path.into_inner();
    if action != "renew" && action != "revoke" {
        return crate::http::not_found().await;
    }
    let form = match web::checked_form(&req, payload, &state).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let tenant = form.get("tenant").map(str::to_owned);
    run(
        &req,
        &state,
        "/tokens".into(),
        async move |conn, user, csrf, _| {
            let principal = match principal(user, tenant.as_deref()) {
                Ok(p) => p,
                Err(problem) => {
                    return Ok(Outcome::Message(
                        StatusCode::FORBIDDEN,
                        "Not available",
                        problem.into(),
                    ))
                }
            };
            let tenant = principal.tenant.clone();
            if action == "renew" {
                match api::renew(conn, &principal, &tenant, &id).await {
                    Ok((token, secret)) => {
                        created_page(conn, user, &principal, "Renewed", &token, &secret, csrf).await
                    }
                    Err(error) => refused(conn, user, &principal, error, csrf).await,
                }
            } else {
                match api::delete(conn, &principal, &tenant, &id).await {
                    Ok(()) => Ok(Outcome::Redirect(format!("/tokens?tenant={tenant}"))),
                    Err(error) => refused(conn, user, &principal, error, csrf).await,
                }
            }
        },
    )
    .await
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Where to go after signing in: `next` only when it names a page of the issuer's own origin.
/// Anything with control characters or white space is refused before parsing, as browsers
/// silently drop tabs and newlines (`/\t/evil.example` becomes `//evil.example`). The answer is
/// the path, query and fragment as the URL parser serialised them, so it is always local.
fn local_path(issuer: &str, next: Option<&str>) -> String {
    const DEFAULT: &str = "/tokens";
    let Some(next) = next else {
        return DEFAULT.into();
    };
    if next.is_empty() || next.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return DEFAULT.into();
    }
    let Ok(base) = url::Url::parse(issuer) else {
        return DEFAULT.into();
    };
    match base.join(next) {
        Ok(target) if target.origin() == base.origin() => {
            target[url::Position::BeforePath..].to_owned()
        }
        _ => DEFAULT.into(),
    }
}

/// `GET /login?next=...`: sign-in for Keyframe's own pages.
pub async fn login_page(
    req: HttpRequest,
    query: aweb::Query<NextQuery>,
    state: aweb::Data<AppState>,
) -> HttpResponse {
    let (csrf, cookie) = state.cookies().csrf_token(&req);
    let page = LoginPage {
        action: "/login",
        client_name: "Keyframe".into(),
        request: local_path(&state.tokens.issuer, query.next.as_deref()),
        csrf,
        username: String::new(),
        error: None,
    };
    web::page(StatusCode::OK, &page, None, cookie.into_iter().collect())
}

/// `POST /login`: the same sign-in as everywhere (lockout included), then on to `next`.
pub async fn login(
    req: HttpRequest,
    payload: aweb::Payload,
    state: aweb::Data<AppState>,
) -> HttpResponse {
    let form = match web::checked_form(&req, payload, &state).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let next = local_path(&state.tokens.issuer, form.get("request"));
    let username = form.get("username").unwrap_or("").to_owned();
    let password = form.get("password").unwrap_or("").to_owned();
    let previous = state.cookies().session_value(&req);
    let source = state.proxies.source(&req);
    let worker = state.clone();
    let _turn = crate::passwords::turn().await;
    let result = worker
        .store
        .clone()
        .run(async move |conn| {
            let now = worker.clock.now();
            match web::sign_in(
                &worker,
                conn,
                previous.as_deref(),
                &username,
                &password,
                &source,
                now,
            )
            .await?
            {
                web::SignIn::Started(session) => Ok::<_, Error>(Ok(session)),
                web::SignIn::Refused(refusal) => Ok(Err((refusal, username))),
            }
        })
        .await;
    match result {
        Ok(Ok(session)) => web::redirect(
            StatusCode::SEE_OTHER,
            &next,
            web::signed_in_cookies(&state, &session),
        ),
        Ok(Err((refusal, username))) => {
            let (csrf, cookie) = state.cookies().csrf_token(&req);
            let page = LoginPage {
                action: "/login",
                client_name: "Keyframe".into(),
                request: next,
                csrf,
                username,
                error: Some(refusal.message.into()),
            };
            refusal.apply(web::page(
                refusal.status,
                &page,
                None,
                cookie.into_iter().collect(),
            ))
        }
        _ => web::message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Something went wrong",
            "Please try again in a moment.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_dates_end_at_midnight_utc() {
        assert_eq!(end_of_day("2030-01-31"), Some(1_896_134_399));
        assert_eq!(end_of_day("2030-02-30"), None);
        assert_eq!(end_of_day("tomorrow"), None);
    }

    #[test]
    fn only_local_paths_are_followed_after_login() {
        let issuer = "https://auth.example";
        for (next, expected) in [
            ("/tokens?tenant=acme", "/tokens?tenant=acme"),
            ("/tokens#created", "/tokens#created"),
            ("https://auth.example/tokens", "/tokens"),
            ("tokens?tenant=beta", "/tokens?tenant=beta"),
        ] {
            assert_eq!(local_path(issuer, Some(next)), expected, "{next}");
        }
        for hostile in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            " //evil.example",
            "/\u{a0}/evil.example",
            "http://auth.example/tokens",
            "https://auth.example:444/tokens",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(local_path(issuer, Some(hostile)), "/tokens", "{hostile:?}");
        }
        assert_eq!(local_path(issuer, None), "/tokens");
    }
}
