//! A minimal browser for HTTP-level page tests: a cookie jar, no automatic redirects, helpers
//! to read hidden form fields and to sign in, and the authorization request a client sends it
//! to.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::TestApp;

/// A browser: a cookie jar, no automatic redirects.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    pub jar: HashMap<String, String>,
    /// Sent with every request, as a reverse proxy in front of Keyframe adds
    /// `X-Forwarded-For`.
    pub headers: HeaderMap,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("a Location header")
            .to_owned()
    }

    /// The value of a hidden form field, unescaped.
    pub fn field(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.body))
            + marker.len();
        let end = start + self.body[start..].find('"').expect("closing quote");
        unescape(&self.body[start..end])
    }

    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }
}

/// HTML character references as askama writes them (named and decimal/hex numeric).
fn unescape(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find(';') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let entity = &after[..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16).ok())
                .unwrap_or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

impl<'a> Browser<'a> {
    pub fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            jar: HashMap::new(),
            headers: HeaderMap::new(),
        }
    }

    fn cookies(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn finish(&mut self, response: reqwest::Response) -> Page {
        for header in response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let pair = header.split(';').next().unwrap_or("");
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || header.contains("Max-Age=0") {
                    self.jar.remove(name);
                } else {
                    self.jar.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let response = self
            .app
            .http
            .get(format!("{}{path}", self.app.address))
            .headers(self.headers.clone())
            .header("Cookie", self.cookies())
            .send()
            .await
            .expect("GET");
        self.finish(response).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let response = self
            .app
            .http
            .post(format!("{}{path}", self.app.address))
            .headers(self.headers.clone())
            .header("Cookie", self.cookies())
            .form(fields)
            .send()
            .await
            .expect("POST");
        self.finish(response).await
    }
}

impl Browser<'_> {
    /// Posts a sign-in form at `path` with these hidden fields and credentials.
    pub async fn post_login(
        &mut self,
        path: &str,
        csrf: &str,
        request: &str,
        username: &str,
        password: &str,
    ) -> Page {
        let fields = [
            ("csrf", csrf),
            ("request", request),
            ("username", username),
            ("password", password),
        ];
        self.post(path, &fields).await
    }

    /// Fills in the sign-in form on `form` (its own hidden fields) and posts it to `path`.
    pub async fn submit_login(
        &mut self,
        path: &str,
        form: &Page,
        username: &str,
        password: &str,
    ) -> Page {
        let (csrf, request) = (form.field("csrf"), form.field("request"));
        self.post_login(path, &csrf, &request, username, password)
            .await
    }

    /// Opens acme's Token Management page signed out, follows it to the login page, signs in
    /// and comes back: the page as the user sees it then.
    pub async fn sign_in_to_tokens(&mut self, username: &str, password: &str) -> Page {
        let first = self.get("/tokens?tenant=acme").await;
        assert_eq!(
            first.status,
            StatusCode::SEE_OTHER,
            "signed out: to the login page"
        );
        let login = self.get(&first.location()).await;
        assert_eq!(login.status, StatusCode::OK);
        let posted = self
            .submit_login("/login", &login, username, password)
            .await;
        assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
        assert_eq!(posted.location(), "/tokens?tenant=acme");
        self.get(&posted.location()).await
    }
}

// ---------------------------------------------------------------------------------------------
// The authorization request (RFC 6749 §4.1 with PKCE).

/// The redirect URI the browser-flow tests register.
pub const REDIRECT: &str = "https://app.example/callback";
pub const VERIFIER: &str = "a-verifier-that-is-long-enough-for-rfc-7636-rules_0123456789";

/// The S256 code challenge of `verifier`.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The query of an authorization request for `client_id` to [`REDIRECT`] with [`VERIFIER`]'s
/// challenge, scope `video:read` and state `st&te 1`; each of `extra` replaces the parameter of
/// that name, or removes it when empty.
pub fn authorize_query(client_id: &str, extra: &[(&str, &str)]) -> String {
    let challenge = challenge(VERIFIER);
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "video:read"),
        ("state", "st&te 1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        pairs.retain(|(name, _)| name != k);
        if !v.is_empty() {
            pairs.push((k, v));
        }
    }
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}
