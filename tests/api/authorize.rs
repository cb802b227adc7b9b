//! The browser flow over HTTP with a cookie jar: authorization request, login, consent,
//! code exchange with PKCE, and every way each step refuses.

use std::collections::HashMap;

use reqwest::header::LOCATION;
use reqwest::StatusCode;
use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{
    authorize_query, claims, Backend, Browser, ClientSpec, Page, TestApp, World, REDIRECT, VERIFIER,
};

/// Tenants acme (alice's default) and beta, alice in both, and the public client "Portal App"
/// with two redirect URIs and the scopes `video:read` and `video:write`.
fn portal(backend: Backend) -> crate::helpers::WorldBuilder {
    World::portal(
        backend,
        &[REDIRECT, "https://app.example/other"],
        &["video:read", "video:write"],
    )
}

impl Browser<'_> {
    /// Opens the authorization URL and signs in: the page after login (consent, or a redirect).
    async fn sign_in(&mut self, query: &str) -> Page {
        let login = self.get(&format!("/oauth/authorize?{query}")).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.body);
        let posted = self
            .submit_login("/oauth/authorize/login", &login, "alice", "alice-pw")
            .await;
        assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
        self.get(&posted.location()).await
    }

    async fn consent(&mut self, page: &Page, decision: &str, tenant: &str) -> Page {
        self.post(
            "/oauth/authorize/consent",
            &[
                ("csrf", &page.field("csrf")),
                ("request", &page.field("request")),
                ("decision", decision),
                ("tenant", tenant),
            ],
        )
        .await
    }
}

/// alice's sign-in on the authorization flow's login form, with these hidden fields.
async fn alice_signs_in(
    browser: &mut Browser<'_>,
    csrf: &str,
    request: &str,
    password: &str,
) -> Page {
    browser
        .post_login("/oauth/authorize/login", csrf, request, "alice", password)
        .await
}

/// The query parameters of a redirect to the client.
fn redirect_params(location: &str) -> HashMap<String, String> {
    assert!(location.starts_with(REDIRECT), "{location}");
    let url = url::Url::parse(location).expect("url");
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The code exchange by the portal (a public client: its `client_id` alone).
async fn exchange(
    w: &World,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> (StatusCode, Value) {
    let mut form = vec![("grant_type", "authorization_code"), ("code", code)];
    if let Some(uri) = redirect_uri {
        form.push(("redirect_uri", uri));
    }
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    let answer = w
        .app
        .post_form("/oauth/token", w.client().auth(), &form)
        .await;
    assert!(!answer.body.is_null(), "not JSON: {}", answer.text);
    (answer.status, answer.body)
}

fn assert_page_headers(page: &Page) {
    let header = |name: &str| {
        page.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    assert!(
        header("content-security-policy").contains("frame-ancestors 'none'"),
        "{:?}",
        page.headers
    );
    assert!(header("content-security-policy").contains("default-src 'none'"));
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("cache-control"), "no-store");
}

async fn code_flow_with_pkce_and_a_chosen_tenant(backend: Backend) {
    let s = portal(backend).build().await;
    let mut browser = Browser::new(&s.app);
    let query = authorize_query(&s.client().id, &[]);

    let login = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(login.status, StatusCode::OK);
    assert_page_headers(&login);
    assert!(
        login.body.contains("Portal App"),
        "the login page names the client"
    );
    assert!(
        login.body.contains("<label for=\"username\">")
            && login.body.contains("<label for=\"password\">")
    );
    assert!(login.set_cookie("kf_csrf").is_some());

    let posted = browser
        .submit_login("/oauth/authorize/login", &login, "ALICE", "alice-pw")
        .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    let session = posted.set_cookie("kf_session").expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(
        !session.contains("Secure"),
        "an http issuer gets no Secure cookie: {session}"
    );

    let consent = browser.get(&posted.location()).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert_page_headers(&consent);
    assert!(
        consent.body.contains("Portal App") && consent.body.contains("View your video"),
        "{}",
        consent.body
    );
    assert!(
        consent.body.contains("Acme Video") && consent.body.contains("Beta Live"),
        "tenant names, not ids alone"
    );
    assert!(
        consent.body.contains("value=\"acme\" checked"),
        "the default tenant is preselected"
    );

    let allowed = browser.consent(&consent, "allow", "beta").await;
    assert_eq!(allowed.status, StatusCode::SEE_OTHER);
    let params = redirect_params(&allowed.location());
    assert_eq!(params["state"], "st&te 1");
    assert_eq!(params["iss"], s.app.issuer);
    let code = params["code"].clone();
    assert!(code.len() >= 43, "at least 256 bits: {code}");

    // A wrong verifier or redirect URI fails without using the code up.
    let (status, body) = exchange(
        &s,
        &code,
        Some(REDIRECT),
        Some("wrong-verifier-wrong-verifier-wrong-verifier-0000"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{body}"
    );
    let (_, body) = exchange(&s, &code, Some("https://app.example/other"), Some(VERIFIER)).await;
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let (_, body) = exchange(&s, &code, None, Some(VERIFIER)).await;
    assert_eq!(
        body["error"], "invalid_grant",
        "redirect_uri was in the request, so it is required: {body}"
    );
    let (_, body) = exchange(&s, &code, Some(REDIRECT), None).await;
    assert_eq!(body["error"], "invalid_grant", "{body}");

    let (status, tokens) = exchange(&s, &code, Some(REDIRECT), Some(VERIFIER)).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(
        tokens["tenant"], "beta",
        "the tenant chosen on the consent page"
    );
    assert_eq!(
        claims(tokens["access_token"].as_str().expect("jwt"))["tenant"],
        "beta"
    );
    assert_eq!(tokens["scope"], "video:read");
    assert_eq!(tokens["token_type"], "Bearer");

    // A second use fails and revokes what the first produced.
    let (status, body) = exchange(&s, &code, Some(REDIRECT), Some(VERIFIER)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let refreshed = s
        .refresh(tokens["refresh_token"].as_str().expect("rt"), &[])
        .await;
    assert_eq!(
        refreshed.status,
        StatusCode::BAD_REQUEST,
        "the first use's refresh token is revoked"
    );
}

async fn bad_authorization_requests(backend: Backend) {
    let s = portal(backend).build().await;
    let mut browser = Browser::new(&s.app);

    // Unknown client, unregistered redirect URI: an error page, never a redirect.
    for query in [
        authorize_query("no-such-client", &[]),
        authorize_query(
            &s.client().id,
            &[("redirect_uri", "https://evil.example/cb")],
        ),
        authorize_query(
            &s.client().id,
            &[("redirect_uri", "https://app.example/callback/")],
        ),
        authorize_query(&s.client().id, &[("redirect_uri", "")]),
        // A repeated parameter (RFC 6749 §3.1) makes the whole request untrustworthy.
        format!(
            "{}&client_id={}",
            authorize_query(&s.client().id, &[]),
            s.client().id
        ),
    ] {
        let page = browser.get(&format!("/oauth/authorize?{query}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(page.headers.get(LOCATION).is_none());
        assert_page_headers(&page);
    }

    // Everything else goes back to the client with error, state and iss.
    let other = s
        .app
        .create_client(
            ClientSpec::confidential("Code-less")
                .grants(&["refresh_token"])
                .redirect_uris(&[REDIRECT]),
        )
        .await;
    type Extra<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Extra, &str); 7] = [
        (
            &[("code_challenge", ""), ("code_challenge_method", "")],
            "invalid_request",
        ),
        (&[("code_challenge_method", "plain")], "invalid_request"),
        (&[("code_challenge_method", "")], "invalid_request"),
        (&[("code_challenge", "too-short")], "invalid_request"),
        (&[("response_type", "token")], "unsupported_response_type"),
        (&[("scope", "video:read admin")], "invalid_scope"),
        (&[("prompt", "sometimes")], "invalid_request"),
    ];
    for (extra, error) in cases {
        let query = authorize_query(&s.client().id, extra);
        let page = browser.get(&format!("/oauth/authorize?{query}")).await;
        assert_eq!(page.status, StatusCode::FOUND, "{query}: {}", page.body);
        let params = redirect_params(&page.location());
        assert_eq!(params["error"], error, "{query}");
        assert!(!params["error_description"].is_empty());
        assert_eq!(params["state"], "st&te 1");
        assert_eq!(params["iss"], s.app.issuer);
    }
    let query = authorize_query(&other.id, &[]);
    let page = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(
        redirect_params(&page.location())["error"],
        "unauthorized_client"
    );
}

async fn csrf_deny_sign_out_and_login_failures(backend: Backend) {
    let s = portal(backend)
        .config(|cfg| cfg.tokens.lockout_threshold = 3)
        .build()
        .await;
    let mut browser = Browser::new(&s.app);
    let query = authorize_query(&s.client().id, &[]);
    let login = browser.get(&format!("/oauth/authorize?{query}")).await;
    let request = login.field("request");

    // No or a wrong CSRF token: refused, no session.
    for csrf in ["", "forged-token-forged-token"] {
        let page = alice_signs_in(&mut browser, csrf, &request, "alice-pw").await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert!(page.set_cookie("kf_session").is_none());
    }

    // Wrong password and unknown user: the same message, no session.
    let csrf = login.field("csrf");
    let mut messages = Vec::new();
    for (user, password) in [("alice", "wrong"), ("nobody", "alice-pw")] {
        let page = browser
            .post_login("/oauth/authorize/login", &csrf, &request, user, password)
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(page.set_cookie("kf_session").is_none());
        let start = page.body.find("role=\"alert\"").expect("an error message");
        messages.push(page.body[start..start + 100.min(page.body.len() - start)].to_owned());
    }
    assert_eq!(
        messages[0], messages[1],
        "the message does not say whether the user exists"
    );

    // Sign in, then a consent post with a forged CSRF token issues nothing.
    let consent = browser.sign_in(&query).await;
    let forged = browser
        .post(
            "/oauth/authorize/consent",
            &[
                ("csrf", "forged-token-forged-token"),
                ("request", &consent.field("request")),
                ("decision", "allow"),
                ("tenant", "acme"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(forged.headers.get(LOCATION).is_none());

    // Deny: access_denied with state and iss.
    let denied = browser.consent(&consent, "deny", "acme").await;
    let params = redirect_params(&denied.location());
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "st&te 1");
    assert_eq!(params["iss"], s.app.issuer);
    assert!(!params.contains_key("code"));

    // Sign out: the next authorization shows the login page again.
    let out = browser
        .post("/oauth/logout", &[("csrf", &consent.field("csrf"))])
        .await;
    assert_eq!(out.status, StatusCode::OK);
    assert!(!browser.jar.contains_key("kf_session"));
    let again = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert!(
        again.body.contains("type=\"password\""),
        "signed out: the login page again"
    );

    // The CSRF token of the login page before that sign-in was replaced at sign-in: a copy of
    // it is worthless now; the fresh login page carries the new one.
    let stale = alice_signs_in(&mut browser, &csrf, &request, "alice-pw").await;
    assert_eq!(stale.status, StatusCode::FORBIDDEN, "{}", stale.body);
    assert!(stale.set_cookie("kf_session").is_none());
    let csrf = again.field("csrf");
    assert_ne!(csrf, login.field("csrf"));

    // The sign-in above cleared alice's failures; three new ones lock her out, and then the
    // right password is refused too, with the time until the lock lifts.
    for _ in 0..3 {
        let page = alice_signs_in(&mut browser, &csrf, &request, "wrong").await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    let page = alice_signs_in(&mut browser, &csrf, &request, "alice-pw").await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    assert!(page.body.contains("Too many failed sign-ins"));
    assert!(page.set_cookie("kf_session").is_none());
    let retry_after: i64 = page.headers["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert_eq!(
        retry_after, 900,
        "the server's clock stood still since the first failure"
    );
}

async fn remembered_consent_and_prompt_values(backend: Backend) {
    let s = portal(backend).build().await;
    let mut browser = Browser::new(&s.app);
    let query = authorize_query(&s.client().id, &[]);

    // prompt=none before signing in.
    let page = browser
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query(&s.client().id, &[("prompt", "none")])
        ))
        .await;
    assert_eq!(redirect_params(&page.location())["error"], "login_required");

    let consent = browser.sign_in(&query).await;
    assert_eq!(consent.status, StatusCode::OK);
    // prompt=none, signed in, no consent yet.
    let page = browser
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query(&s.client().id, &[("prompt", "none")])
        ))
        .await;
    assert_eq!(
        redirect_params(&page.location())["error"],
        "consent_required"
    );

    let allowed = browser.consent(&consent, "allow", "acme").await;
    assert!(redirect_params(&allowed.location()).contains_key("code"));

    // Remembered: straight back with a code, for the default tenant.
    for extra in [&[][..], &[("prompt", "none")][..]] {
        let page = browser
            .get(&format!(
                "/oauth/authorize?{}",
                authorize_query(&s.client().id, extra)
            ))
            .await;
        assert_eq!(page.status, StatusCode::FOUND, "{extra:?}");
        let code = redirect_params(&page.location())["code"].clone();
        let (status, tokens) = exchange(&s, &code, Some(REDIRECT), Some(VERIFIER)).await;
        assert_eq!(
            (status, tokens["tenant"].as_str()),
            (StatusCode::OK, Some("acme"))
        );
    }
    // prompt=consent asks again; another scope set or tenant is not covered by the consent.
    for extra in [
        &[("prompt", "consent")][..],
        &[("scope", "video:read video:write")][..],
        &[("tenant", "beta")][..],
    ] {
        let page = browser
            .get(&format!(
                "/oauth/authorize?{}",
                authorize_query(&s.client().id, extra)
            ))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{extra:?}");
        assert!(page.body.contains("name=\"decision\""), "{extra:?}");
    }
    // A tenant asked for preselects it; one the user is not in goes back as invalid_request.
    let page = browser
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query(&s.client().id, &[("tenant", "beta")])
        ))
        .await;
    assert!(page.body.contains("value=\"beta\" checked"));
    let page = browser
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query(&s.client().id, &[("tenant", "gamma")])
        ))
        .await;
    assert_eq!(
        redirect_params(&page.location())["error"],
        "invalid_request"
    );

    // prompt=login shows the login page although a session exists.
    let page = browser
        .get(&format!(
            "/oauth/authorize?{}",
            authorize_query(&s.client().id, &[("prompt", "login")])
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("type=\"password\""));
}

async fn expired_codes_are_refused(backend: Backend) {
    let s = portal(backend).build().await;
    let mut browser = Browser::new(&s.app);
    let consent = browser.sign_in(&authorize_query(&s.client().id, &[])).await;
    let allowed = browser.consent(&consent, "allow", "acme").await;
    let code = redirect_params(&allowed.location())["code"].clone();
    // Codes live 60 seconds.
    s.app.clock.advance(60);
    let (status, body) = exchange(&s, &code, Some(REDIRECT), Some(VERIFIER)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{body}"
    );
}

async fn https_issuers_get_secure_cookies(backend: Backend) {
    let s = portal(backend)
        .config(|cfg| cfg.issuer = Some("https://auth.example".into()))
        .build()
        .await;
    // `__Host-`: the browser takes the cookie only Secure, for `/` and without a Domain, so
    // neither a sibling subdomain nor a plain-http answer can plant it.
    let assert_host_cookie = |cookie: Option<String>| {
        let cookie = cookie.expect("a __Host- cookie");
        for attribute in ["Secure", "Path=/"] {
            assert!(cookie.contains(attribute), "{attribute}: {cookie}");
        }
        assert!(!cookie.contains("Domain"), "{cookie}");
    };
    let mut browser = Browser::new(&s.app);
    let query = authorize_query(&s.client().id, &[]);
    let login = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert_host_cookie(login.set_cookie("__Host-kf_csrf"));
    assert!(login.set_cookie("kf_csrf").is_none());
    let posted = browser
        .submit_login("/oauth/authorize/login", &login, "alice", "alice-pw")
        .await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    assert_host_cookie(posted.set_cookie("__Host-kf_session"));
    assert!(posted.set_cookie("kf_session").is_none());
    let consent = browser.get(&posted.location()).await;
    assert!(
        consent.body.contains("Allow"),
        "signed in: {}",
        consent.body
    );

    // An unprefixed cookie, as a sibling subdomain could set, signs nobody in.
    let session = browser
        .jar
        .remove("__Host-kf_session")
        .expect("the session in the jar");
    browser.jar.insert("kf_session".into(), session);
    let page = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert!(
        page.body.contains("type=\"password\""),
        "the login page: {}",
        page.body
    );
}

/// Signing in again (`prompt=login`) ends the session the browser came with: a copy of the old
/// cookie signs nobody in afterwards.
async fn signing_in_again_ends_the_previous_session(backend: Backend) {
    let s = portal(backend).build().await;
    let mut browser = Browser::new(&s.app);
    let silently = format!(
        "/oauth/authorize?{}",
        authorize_query(&s.client().id, &[("prompt", "none")])
    );
    let consent = browser.sign_in(&authorize_query(&s.client().id, &[])).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    let first = browser.jar.get("kf_session").cloned().expect("a session");

    let consent = browser
        .sign_in(&authorize_query(&s.client().id, &[("prompt", "login")]))
        .await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    let second = browser.jar.get("kf_session").cloned().expect("a session");
    assert_ne!(first, second, "a new session id");
    // The new session is signed in: prompt=none asks for consent, not for a login.
    let page = browser.get(&silently).await;
    assert_eq!(
        redirect_params(&page.location())["error"],
        "consent_required"
    );

    browser.jar.insert("kf_session".into(), first);
    let page = browser.get(&silently).await;
    assert_eq!(
        redirect_params(&page.location())["error"],
        "login_required",
        "the old cookie still signs in"
    );
}

backend_tests!(
    signing_in_again_ends_the_previous_session,
    code_flow_with_pkce_and_a_chosen_tenant,
    bad_authorization_requests,
    csrf_deny_sign_out_and_login_failures,
    remembered_consent_and_prompt_values,
    expired_codes_are_refused,
    https_issuers_get_secure_cookies,
);

/// Static assets come from the binary.
#[tokio::test]
async fn the_stylesheet_is_served_from_the_binary() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let css = app.get("/static/keyframe.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css
        .header("content-type")
        .expect("type")
        .starts_with("text/css"));
    assert!(css.text.contains(".card"));
}
