//! The consent form: Allow issues a code for the chosen tenant, Deny sends `access_denied`.

use actix_web::http::StatusCode;
use actix_web::{web as aweb, HttpRequest, HttpResponse};

use crate::authorization::AuthorizationRequest;
use crate::error::Error;
use crate::oauth::authorize::{self, Step};
use crate::startup::AppState;
use crate::tenants::TenantId;
use crate::{sessions, web};

/// `POST /oauth/authorize/consent`.
pub async fn consent(
    req: HttpRequest,
    payload: aweb::Payload,
    state: aweb::Data<AppState>,
) -> HttpResponse {
    let form = match web::checked_form(&req, payload, &state).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let query = form.get("request").unwrap_or("").to_owned();
    let decision = form.get("decision").unwrap_or("").to_owned();
    let chosen = form.get("tenant").map(str::to_owned);
    let session = state.cookies().session_value(&req);
    let worker = state.clone();
    let step = worker
        .store
        .clone()
        .run(async move |conn| {
            let now = worker.clock.now();
            let issuer = &worker.tokens.issuer;
            let request = match AuthorizationRequest::parse(conn, &query, issuer).await {
                Ok(request) => request,
                Err(refusal) => return Ok(Step::from(refusal)),
            };
            let user = match session.as_deref() {
                Some(cookie) => sessions::user(conn, cookie, now).await?,
                None => None,
            };
            // The session ended meanwhile: start over at the login page.
            let Some(user) = user else {
                return Ok(authorize::login_step(&request, &query, String::new(), None));
            };
            match decision.as_str() {
                "deny" => Ok(Step::Redirect(request.error_redirect(
                    "access_denied",
                    "the user denied the request",
                    issuer,
                ))),
                "allow" => {
                    let tenant = match chosen.as_deref().map(TenantId::parse) {
                        Some(Ok(t)) if user.membership(&t).is_some() => t,
                        Some(_) => {
                            return Ok(Step::Message(
                                StatusCode::BAD_REQUEST,
                                "That VideoManager is not available",
                                "Choose one of the VideoManagers listed on the previous page."
                                    .into(),
                            ));
                        }
                        None => match request.tenant_for(&user) {
                            Ok(t) => t,
                            Err(problem) => {
                                return Ok(Step::Redirect(request.error_redirect(
                                    "invalid_request",
                                    &problem.to_string(),
                                    issuer,
                                )))
                            }
                        },
                    };
                    request.remember_consent(conn, &user, &tenant, now).await?;
                    let code = worker
                        .tokens
                        .issue_code(conn, &request, &user, &tenant, now)
                        .await?;
                    Ok(Step::Redirect(request.code_redirect(code.expose(), issuer)))
                }
                _ => Ok(Step::Message(
                    StatusCode::BAD_REQUEST,
                    "The form could not be read",
                    "Choose Allow or Deny.".into(),
                )),
            }
        })
        .await;
    let step = match step {
        Ok(step) => step,
        Err::<_, Error>(error) => authorize::internal(error),
    };
    authorize::respond(&req, &state, step, true)
}
