//! The pages' two cookies, the session and the CSRF token, named and flagged in one place.
//!
//! With an https issuer both carry the `__Host-` prefix: the browser then accepts them only
//! when Secure, for path `/` and without a Domain, so a sibling subdomain or a plain-http
//! response cannot plant or overwrite them.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secrets;

#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    secure: bool,
}

impl Cookies {
    pub fn for_issuer(issuer: &str) -> Self {
        Self {
            secure: issuer.starts_with("https://"),
        }
    }

    pub fn session_name(self) -> &'static str {
        if self.secure {
            "__Host-kf_session"
        } else {
            "kf_session"
        }
    }

    fn csrf_name(self) -> &'static str {
        if self.secure {
            "__Host-kf_csrf"
        } else {
            "kf_csrf"
        }
    }

    fn build(self, name: &'static str, value: String, same_site: SameSite) -> Cookie<'static> {
        Cookie::build(name, value)
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(same_site)
            .finish()
    }

    pub fn session(self, value: &str, max_age: i64) -> Cookie<'static> {
        let mut cookie = self.build(self.session_name(), value.to_owned(), SameSite::Lax);
        cookie.set_max_age(actix_web::cookie::time::Duration::seconds(max_age));
        cookie
    }

    pub fn clear_session(self) -> Cookie<'static> {
        let mut cookie = self.session("", 0);
        cookie.make_removal();
        cookie
    }

    pub fn session_value(self, req: &HttpRequest) -> Option<String> {
        req.cookie(self.session_name())
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The CSRF token for the page being rendered, and a cookie to set when one is needed.
    /// A signed-in browser's token is derived from its session cookie, which a cross-site
    /// page can neither read nor set; so it changes with every sign-in and dies with the
    /// session. Before sign-in it is the double-submit cookie's value.
    pub fn csrf_token(self, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
        if let Some(session) = self.session_value(req) {
            return (session_bound(&session), None);
        }
        if let Some(existing) = req
            .cookie(self.csrf_name())
            .map(|c| c.value().to_owned())
            .filter(|v| v.len() >= 22)
        {
            return (existing, None);
        }
        let (token, cookie) = self.fresh_csrf();
        (token, Some(cookie))
    }

    /// A new double-submit cookie, set at sign-in so that a token seen before it (or planted)
    /// is worthless once the browser is signed out again.
    pub fn fresh_csrf(self) -> (String, Cookie<'static>) {
        let token = secrets::random_id();
        let cookie = self.build(self.csrf_name(), token.clone(), SameSite::Strict);
        (token, cookie)
    }

    pub fn csrf_ok(self, req: &HttpRequest, submitted: Option<&str>) -> bool {
        let expected = match self.session_value(req) {
            Some(session) => session_bound(&session),
            None => match req.cookie(self.csrf_name()) {
                Some(cookie) if cookie.value().len() >= 22 => cookie.value().to_owned(),
                _ => return false,
            },
        };
        match submitted {
            Some(submitted) if !submitted.is_empty() => {
                expected.as_bytes().ct_eq(submitted.as_bytes()).into()
            }
            _ => false,
        }
    }
}

/// Domain-separated from the session's stored digest, so that a copy of the sessions table
/// does not give away CSRF tokens.
fn session_bound(session: &str) -> String {
    use base64::Engine;
    let mut hash = Sha256::new();
    hash.update(b"keyframe csrf v1\0");
    hash.update(session.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn https_issuers_get_host_prefixed_secure_cookies() {
        let https = Cookies::for_issuer("https://auth.example");
        let session = https.session("v", 60);
        assert_eq!(session.name(), "__Host-kf_session");
        assert_eq!(session.secure(), Some(true));
        assert_eq!(session.path(), Some("/"));
        assert_eq!(session.domain(), None);
        let (_, csrf) = https.fresh_csrf();
        assert_eq!(csrf.name(), "__Host-kf_csrf");
        let http = Cookies::for_issuer("http://127.0.0.1:8080");
        assert_eq!(http.session("v", 60).name(), "kf_session");
        // An https issuer ignores an unprefixed cookie someone else may have planted.
        let planted = TestRequest::default()
            .cookie(Cookie::new("kf_session", "kf_ss_planted"))
            .to_http_request();
        assert_eq!(https.session_value(&planted), None);
    }

    #[test]
    fn the_csrf_token_follows_the_session() {
        let cookies = Cookies::for_issuer("http://localhost");
        let signed_out = TestRequest::default()
            .cookie(Cookie::new("kf_csrf", "double-submit-token-0123"))
            .to_http_request();
        let (before, set) = cookies.csrf_token(&signed_out);
        assert_eq!(before, "double-submit-token-0123");
        assert!(set.is_none());
        assert!(cookies.csrf_ok(&signed_out, Some(&before)));

        let signed_in = |session: &str| {
            TestRequest::default()
                .cookie(Cookie::new("kf_csrf", "double-submit-token-0123"))
                .cookie(Cookie::new("kf_session", session.to_owned()))
                .to_http_request()
        };
        let (token, _) = cookies.csrf_token(&signed_in("kf_ss_one"));
        assert_ne!(token, before);
        assert!(cookies.csrf_ok(&signed_in("kf_ss_one"), Some(&token)));
        assert!(
            !cookies.csrf_ok(&signed_in("kf_ss_one"), Some(&before)),
            "the pre-sign-in token no longer counts"
        );
        assert!(
            !cookies.csrf_ok(&signed_in("kf_ss_two"), Some(&token)),
            "another session's token does not count"
        );
        assert!(!cookies.csrf_ok(&signed_in("kf_ss_one"), Some("")));
    }
}
