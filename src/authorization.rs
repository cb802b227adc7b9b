//! The authorization request (RFC 6749 §4.1.1 with PKCE, RFC 7636) and what follows it:
//! which errors may be sent back to the client, remembered consent, and the redirect.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::clients::{self, Client, GrantType, Pkce};
use crate::db::{self, Conn};
use crate::error::Error;
use crate::form::Form;
use crate::tenants::TenantId;
use crate::tokens::scope;
use crate::users::{TenantRefusal, User};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Unspecified,
    None,
    Login,
    Consent,
}

/// A validated authorization request.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client: Client,
    pub redirect_uri: String,
    /// Whether the request named the redirect URI (then the token request must repeat it).
    pub redirect_uri_given: bool,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub tenant: Option<TenantId>,
    pub prompt: Prompt,
}

/// Why a request goes no further.
#[derive(Debug)]
pub enum Refusal {
    /// Shown to the user: the client or its redirect URI cannot be trusted with a redirect.
    Page(String),
    /// Sent back to the client's redirect URI (RFC 6749 §4.1.2.1).
    Redirect(String),
    Internal(Error),
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Refusal::Internal(error)
    }
}

impl AuthorizationRequest {
    /// Validates a query string. Until the client and redirect URI are known good, errors are
    /// pages; after that they go back to the client with `state` and `iss` (RFC 9207).
    pub async fn parse(conn: &mut Conn, query: &str, issuer: &str) -> Result<Self, Refusal> {
        let form = Form::parse(query.as_bytes()).map_err(|e| Refusal::Page(e.description()))?;
        let client_id = form.get("client_id").ok_or_else(|| {
            Refusal::Page("The request names no client (client_id is missing).".into())
        })?;
        let client = clients::find(conn, client_id).await?.ok_or_else(|| {
            Refusal::Page("The application that sent you here is not registered.".into())
        })?;
        let (redirect_uri, redirect_uri_given) = match form.get("redirect_uri") {
            // RFC 9700 §4.1.3: exact string comparison, no pattern matching.
            Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => (uri.to_owned(), true),
            Some(_) => {
                return Err(Refusal::Page(
                    "The application asked to send you to an address it has not registered.".into(),
                ))
            }
            None if client.redirect_uris.len() == 1 => (client.redirect_uris[0].clone(), false),
            None => {
                return Err(Refusal::Page(
                    "The request does not say where to send you back (redirect_uri is missing)."
                        .into(),
                ))
            }
        };
        let state = form.get("state").map(str::to_owned);
        let back = |error: &str, description: &str| {
            Refusal::Redirect(error_redirect(
                &redirect_uri,
                error,
                description,
                state.as_deref(),
                issuer,
            ))
        };
        match form.get("response_type") {
            Some("code") => {}
            Some(_) => {
                return Err(back(
                    "unsupported_response_type",
                    "only response_type=code is supported",
                ))
            }
            None => return Err(back("invalid_request", "response_type is missing")),
        }
        if !client.allows(GrantType::AuthorizationCode) {
            return Err(back(
                "unauthorized_client",
                "this client may not use the authorization code grant",
            ));
        }
        let scopes = scope::resolve(form.get("scope"), &client.scopes)
            .map_err(|e| back("invalid_scope", &e.description()))?;
        let code_challenge = match (
            form.get("code_challenge"),
            form.get("code_challenge_method"),
        ) {
            (Some(challenge), Some("S256")) => {
                if !is_pkce_value(challenge) {
                    return Err(back(
                        "invalid_request",
                        "code_challenge must be 43 to 128 characters of base64url",
                    ));
                }
                Some(challenge.to_owned())
            }
            (Some(_), Some(other)) => {
                return Err(back(
                    "invalid_request",
                    &format!("code_challenge_method {other} is not supported: use S256"),
                ));
            }
            // RFC 7636 §4.3 defaults to plain, which RFC 9700 §2.1.1 rules out.
            (Some(_), None) => {
                return Err(back(
                    "invalid_request",
                    "code_challenge_method is missing: use S256",
                ))
            }
            (None, Some(_)) => return Err(back("invalid_request", "code_challenge is missing")),
            (None, None) if client.pkce == Pkce::Required => {
                return Err(back("invalid_request", "this client must use PKCE: send code_challenge with code_challenge_method=S256"));
            }
            (None, None) => None,
        };
        let prompt = match form.get("prompt") {
            None => Prompt::Unspecified,
            Some("none") => Prompt::None,
            Some("login") => Prompt::Login,
            Some("consent") => Prompt::Consent,
            Some(other) => {
                return Err(back(
                    "invalid_request",
                    &format!("unsupported prompt value {other}"),
                ))
            }
        };
        let tenant = form
            .get("tenant")
            .map(TenantId::parse)
            .transpose()
            .map_err(|e| back("invalid_request", &e.to_string()))?;
        Ok(Self {
            client,
            redirect_uri,
            redirect_uri_given,
            scopes,
            state,
            code_challenge,
            tenant,
            prompt,
        })
    }

    /// Where an error for this request goes.
    pub fn error_redirect(&self, error: &str, description: &str, issuer: &str) -> String {
        error_redirect(
            &self.redirect_uri,
            error,
            description,
            self.state.as_deref(),
            issuer,
        )
    }

    /// Where the code goes: `code`, `state` and `iss` (RFC 9207) added to the redirect URI.
    pub fn code_redirect(&self, code: &str, issuer: &str) -> String {
        let mut params = vec![("code", code)];
        if let Some(state) = &self.state {
            params.push(("state", state));
        }
        params.push(("iss", issuer));
        append_query(&self.redirect_uri, &params)
    }

    /// The tenant to preselect: the requested one if the user belongs to it, else the default.
    pub fn tenant_for(&self, user: &User) -> Result<TenantId, TenantRefusal> {
        user.choose_tenant(self.tenant.as_ref())
            .map(|m| m.id.clone())
    }

    /// The consent key: the scope set in a canonical order.
    pub fn scope_key(&self) -> String {
        let mut scopes = self.scopes.clone();
        scopes.sort();
        scope::join(&scopes)
    }

    pub async fn consent_remembered(
        &self,
        conn: &mut Conn,
        user: &User,
        tenant: &TenantId,
    ) -> Result<bool, Error> {
        db::consents::exists(
            conn,
            &user.id,
            &self.client.client_id,
            tenant.as_str(),
            &self.scope_key(),
        )
        .await
    }

    pub async fn remember_consent(
        &self,
        conn: &mut Conn,
        user: &User,
        tenant: &TenantId,
        now: i64,
    ) -> Result<(), Error> {
        db::consents::remember(
            conn,
            &user.id,
            &self.client.client_id,
            tenant.as_str(),
            &self.scope_key(),
            now,
        )
        .await
    }
}

fn error_redirect(
    redirect_uri: &str,
    error: &str,
    description: &str,
    state: Option<&str>,
    issuer: &str,
) -> String {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    params.push(("iss", issuer));
    append_query(redirect_uri, &params)
}

/// Adds parameters to a URI that may already have a query (RFC 6749 §3.1.2 keeps it).
fn append_query(uri: &str, params: &[(&str, &str)]) -> String {
    let encoded: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let separator = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{separator}{encoded}")
}

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set.
pub fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// RFC 7636 §4.6: BASE64URL(SHA256(verifier)) == challenge.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use subtle::ConstantTimeEq;
    is_pkce_value(verifier)
        && URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()))
            .as_bytes()
            .ct_eq(challenge.as_bytes())
            .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_follows_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            challenge
        ));
        assert!(!pkce_matches("short", challenge));
    }

    #[test]
    fn redirects_keep_the_existing_query_and_encode_values() {
        assert_eq!(
            error_redirect("https://app.example/cb?x=1", "access_denied", "no thanks", Some("a b&c"), "https://kf.example"),
            "https://app.example/cb?x=1&error=access_denied&error_description=no+thanks&state=a+b%26c&iss=https%3A%2F%2Fkf.example"
        );
    }
}
