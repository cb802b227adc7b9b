//! Least privilege: which credentials may manage API tokens (the client's scope, the kind of
//! credential, whose token it is), where signing in may send the browser, that a hostile
//! sign-out still ends the session, the lockout per source address behind a trusted proxy, and
//! what token exchange and revocation refuse.

use reqwest::header::{HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::{
    authorize_query, ids, secret, token_path, Answer, Backend, Browser, ClientSpec, Page, World,
    WorldBuilder, ACCESS_TOKEN_TYPE, ALICE_PASSWORD, REDIRECT,
};

// ---------------------------------------------------------------------------------------------
// Managing API tokens.

/// RFC 6750 §3.1: the refusal names the scope that would have done.
const CHALLENGE: &str =
    r#"Bearer realm="keyframe", error="insufficient_scope", scope="keyframe:tokens""#;

#[track_caller]
fn assert_insufficient_scope(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert_eq!(
        answer.header("www-authenticate"),
        Some(CHALLENGE),
        "{:?}",
        answer.headers
    );
    assert_eq!(
        answer.body["error"], "insufficient_scope",
        "{}",
        answer.text
    );
    assert!(
        answer.body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{}",
        answer.text
    );
    assert_eq!(
        answer.body.as_object().map(|o| o.len()),
        Some(2),
        "error and error_description only, never a secret: {}",
        answer.text
    );
}

/// Tries every change with `bearer`: creating a token of each kind, renewing and revoking each
/// of `tokens`. Every one must be refused for want of `keyframe:tokens`.
async fn assert_manages_nothing(w: &World, bearer: &str, tokens: &[&Value]) {
    for body in [
        json!({"name": "Minted", "kind": "personal"}),
        json!({"name": "Minted", "kind": "system", "roles": ["owner"]}),
    ] {
        let answer = w
            .app
            .bearer(
                Method::POST,
                "/api/v1/tenants/acme/tokens",
                bearer,
                Some(body),
            )
            .await;
        assert_insufficient_scope(&answer);
    }
    for token in tokens {
        let path = token_path(token);
        let renew = w
            .app
            .bearer(Method::POST, &format!("{path}/renew"), bearer, None)
            .await;
        assert_insufficient_scope(&renew);
        assert_insufficient_scope(&w.app.bearer(Method::DELETE, &path, bearer, None).await);
    }
}

/// The refusals changed nothing: the owner lists exactly `tokens`, and each one's secret still
/// works (a renewal would have killed it).
async fn assert_unchanged(w: &World, owner: &str, tokens: &[&Value]) {
    let (status, listed) = w.list("acme", owner).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let mut expected: Vec<String> = tokens
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect();
    expected.sort();
    assert_eq!(ids(&listed), expected, "nothing created or revoked");
    for token in tokens {
        assert_eq!(
            w.introspect(&secret(token)).await["active"],
            true,
            "{} was renewed",
            token["name"]
        );
    }
}

/// Holding a tenant owner's access token is not enough: the client it was issued to must have
/// been registered with `keyframe:tokens`. A third-party app's token, or a backend's meant for
/// another API, must not mint credentials that outlive it; it may still read the list.
async fn only_access_tokens_with_keyframe_tokens_manage_tokens(backend: Backend) {
    let w = World::api_tokens(backend).build().await;
    // The world's first-party client is registered with keyframe:tokens: it creates.
    let first_party = w.access_token("olivia", "acme").await;
    let system = w.system_token(&first_party, "Encoder", &["member"]).await;
    let personal = w.personal_token(&first_party, "Laptop").await;

    for (client, scope) in [
        (ClientSpec::public("Video Player"), "video:read"),
        (ClientSpec::confidential("Reporting"), "reports:read"),
    ] {
        let client = w
            .app
            .create_client(client.grants(&["password"]).scopes(&[scope]))
            .await;
        let granted = w
            .app
            .password_grant(&client, "olivia", "olivia-pw", &[("tenant", "acme")])
            .await
            .ok();
        assert_eq!(granted.body["scope"], scope, "{}", granted.text);
        let token = granted.access_token();
        assert_manages_nothing(&w, &token, &[&system, &personal]).await;
        let (status, listed) = w.list("acme", &token).await;
        assert_eq!(status, StatusCode::OK, "{scope}: listing is not managing");
        assert_eq!(ids(&listed).len(), 2, "{listed}");
    }
    assert_unchanged(&w, &first_party, &[&system, &personal]).await;
}

/// An API token, or a JWT exchanged from one, never manages tokens, not even its own: a leaked
/// token could otherwise renew itself past its revocation. This holds for the owner's personal
/// token and for a system token with the owner role.
async fn api_tokens_and_their_exchanged_jwts_never_manage_tokens(backend: Backend) {
    let w = World::api_tokens(backend).build().await;
    let owner = w.access_token("olivia", "acme").await;
    let personal = w.personal_token(&owner, "Laptop").await;
    let system = w.system_token(&owner, "Ops", &["owner"]).await;

    for token in [&personal, &system] {
        let exchanged = w.exchange(&secret(token)).await.ok().access_token();
        for bearer in [secret(token), exchanged] {
            assert_manages_nothing(&w, &bearer, &[&personal, &system]).await;
        }
    }
    assert_unchanged(&w, &owner, &[&personal, &system]).await;
}

/// Whoever renews a personal token receives its new secret and can act as its user: only that
/// user renews it. Taking a member's token away is an owner's or admin's job, though.
async fn personal_tokens_are_renewed_by_their_user_and_revoked_by_owners_and_admins(
    backend: Backend,
) {
    let w = World::api_tokens(backend)
        .user("ada", "ada-pw", &["acme:admin"])
        .build()
        .await;
    let owner = w.access_token("olivia", "acme").await;
    let admin = w.access_token("ada", "acme").await;
    let member = w.access_token("max", "acme").await;
    let laptop = w.personal_token(&member, "Laptop").await;
    let script = w.personal_token(&member, "Script").await;

    let renew = format!("{}/renew", token_path(&laptop));
    for bearer in [&owner, &admin] {
        let refused = w.app.bearer(Method::POST, &renew, bearer, None).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
        assert!(refused.body.get("token").is_none(), "{}", refused.text);
        assert!(
            refused.description().contains("renewed only by the user"),
            "{}",
            refused.text
        );
    }
    assert_eq!(
        w.introspect(&secret(&laptop)).await["active"],
        true,
        "the refusals renewed nothing"
    );

    let renewed = w.app.bearer(Method::POST, &renew, &member, None).await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text);
    let new_secret = secret(&renewed.body);
    assert_ne!(new_secret, secret(&laptop));
    assert_eq!(
        w.introspect(&secret(&laptop)).await,
        json!({"active": false})
    );

    let by_owner = w
        .app
        .bearer(Method::DELETE, &token_path(&laptop), &owner, None)
        .await;
    assert_eq!(by_owner.status, StatusCode::NO_CONTENT, "{}", by_owner.text);
    let by_admin = w
        .app
        .bearer(Method::DELETE, &token_path(&script), &admin, None)
        .await;
    assert_eq!(by_admin.status, StatusCode::NO_CONTENT, "{}", by_admin.text);
    for revoked in [new_secret, secret(&script)] {
        assert_eq!(w.introspect(&revoked).await, json!({"active": false}));
    }
    let (_, left) = w.list("acme", &member).await;
    assert_eq!(left["tokens"], json!([]));
}

// ---------------------------------------------------------------------------------------------
// Signing in and out in the browser.

/// Browsers drop tabs and newlines from URLs: `/\t/evil.example/phish` would be followed as
/// `//evil.example/phish`, another site. After signing in, the browser stays on the issuer,
/// whether the form is posted as served or with its hidden `request` field tampered with.
async fn signing_in_never_redirects_off_the_issuer(backend: Backend) {
    let w = World::api_tokens(backend).build().await;
    let mut browser = Browser::new(&w.app);
    let login = browser.get("/login?next=/%09/evil.example/phish").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    for request in [
        login.field("request"),
        "/\t/evil.example/phish".to_owned(),
        "//evil.example/phish".to_owned(),
    ] {
        // Each sign-in replaces the CSRF token: the form is fetched again, as a browser would.
        let csrf = browser.get("/login").await.field("csrf");
        let posted = browser
            .post_login("/login", &csrf, &request, "olivia", "olivia-pw")
            .await;
        assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
        let location = posted.location();
        assert!(
            location.starts_with('/')
                && !location.starts_with("//")
                && !location.contains("evil.example"),
            "{request:?} led to {location}"
        );
        assert_eq!(location, "/tokens", "{request:?}: the default page");
    }
    let page = browser.get("/tokens").await;
    assert_eq!(page.status, StatusCode::OK, "signed in, on the issuer");
}

/// A sign-out whose `request` smuggles CR/LF (raw, or encoded inside a value) is no
/// authorization request to return to: a plain sign-out, no 500, no injected header, the
/// cookie cleared, and the session ended on the server, so a copy of the cookie is worthless.
async fn signing_out_with_crlf_in_the_request_ends_the_session(backend: Backend) {
    let w = World::api_tokens(backend).build().await;
    for request in [
        "response_type=code&client_id=x\r\nSet-Cookie: a=b",
        "response_type=code&client_id=x&state=%0d%0aSet-Cookie:%20a=b",
    ] {
        let mut browser = Browser::new(&w.app);
        let page = browser.sign_in_to_tokens("olivia", "olivia-pw").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let session = browser.jar.get("kf_session").cloned().expect("a session");

        let out = browser
            .post(
                "/oauth/logout",
                &[("csrf", &page.field("csrf")), ("request", request)],
            )
            .await;
        assert_eq!(out.status, StatusCode::OK, "{request:?}: {}", out.body);
        assert!(out.body.contains("You are signed out"), "{}", out.body);
        assert!(out.headers.get(LOCATION).is_none(), "{:?}", out.headers);
        let cleared = out
            .set_cookie("kf_session")
            .expect("the session cookie is cleared");
        assert!(
            cleared.starts_with("kf_session=;") && cleared.contains("Max-Age=0"),
            "{cleared}"
        );
        assert!(out.set_cookie("a").is_none(), "{:?}", out.headers);

        browser.jar.insert("kf_session".into(), session);
        let after = browser.get("/tokens?tenant=acme").await;
        assert_eq!(after.status, StatusCode::SEE_OTHER, "{request:?}");
        assert!(
            after.location().starts_with("/login?"),
            "the old cookie still signs in: {}",
            after.location()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The lockout, per source address.

const WINDOW: i64 = 600;
/// Clients as the reverse proxy at 127.0.0.1 names them in `X-Forwarded-For`.
const A: &str = "192.0.2.1";
const B: &str = "198.51.100.2";
const C: &str = "203.0.113.3";

/// Three failures lock a username for one source; the tests connect through 127.0.0.1.
fn trust_the_proxy(cfg: &mut keyframe::config::Config) {
    cfg.trusted_proxies = vec!["127.0.0.1/32".parse().expect("CIDR")];
    cfg.tokens.lockout_threshold = 3;
    cfg.tokens.lockout_window = WINDOW;
}

/// The token service behind a trusted reverse proxy.
fn behind_proxy(backend: Backend) -> WorldBuilder {
    World::token_service(backend).config(trust_the_proxy)
}

/// alice's password grant, forwarded for `forwarded_for`.
async fn password_from(w: &World, forwarded_for: &str, password: &str) -> Answer {
    let client = w.client();
    let request = w
        .app
        .request(Method::POST, "/oauth/token")
        .header("X-Forwarded-For", forwarded_for)
        .basic_auth(&client.id, client.secret.as_deref())
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", password),
        ]);
    Answer::send(request).await
}

/// `Retry-After` says in seconds when the lock lifts.
#[track_caller]
fn assert_retry_after(headers: &HeaderMap) {
    let seconds: i64 = headers
        .get(RETRY_AFTER)
        .unwrap_or_else(|| panic!("no Retry-After: {headers:?}"))
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("delay-seconds");
    // The failures were moments ago: the lock lifts about a window from now.
    assert!(
        (WINDOW - 60..=WINDOW).contains(&seconds),
        "Retry-After {seconds}, with a {WINDOW}-second window"
    );
}

#[track_caller]
fn assert_wrong_password(answer: &Answer) {
    answer.assert_400("invalid_grant");
    assert!(
        !answer.description().contains("temporarily locked"),
        "{}",
        answer.text
    );
    assert!(
        answer.header("retry-after").is_none(),
        "{:?}",
        answer.headers
    );
}

#[track_caller]
fn assert_locked(answer: &Answer) {
    answer.assert_400("invalid_grant");
    assert!(
        answer.description().contains("temporarily locked"),
        "{}",
        answer.text
    );
    assert_retry_after(&answer.headers);
}

/// Someone guessing alice's password from A locks A out, not alice: she signs in from B.
async fn the_token_endpoint_locks_only_the_guessing_source(backend: Backend) {
    let w = behind_proxy(backend).build().await;
    for _ in 0..3 {
        assert_wrong_password(&password_from(&w, A, "wrong").await);
    }
    assert_locked(&password_from(&w, A, ALICE_PASSWORD).await);
    // Only the hop the proxy appended counts, not what the client sent in front of it.
    assert_locked(&password_from(&w, &format!("{B}, {A}"), ALICE_PASSWORD).await);
    password_from(&w, B, ALICE_PASSWORD).await.ok();
}

async fn vms_login_from(w: &World, forwarded_for: &str, password: &str) -> Answer {
    let request = w
        .app
        .request(Method::POST, "/v1/vms/auth/login")
        .header("X-Forwarded-For", forwarded_for)
        .json(&json!({"username": "alice", "password": password}));
    Answer::send(request).await
}

async fn vms_login_locks_only_the_guessing_source(backend: Backend) {
    let w = behind_proxy(backend).build().await;
    for _ in 0..3 {
        let failed = vms_login_from(&w, A, "wrong").await;
        assert_eq!(failed.status, StatusCode::UNAUTHORIZED, "{}", failed.text);
    }
    let locked = vms_login_from(&w, A, ALICE_PASSWORD).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.text
    );
    assert_eq!(locked.body["error"], "too_many_requests", "{}", locked.text);
    assert!(locked.body.get("accessToken").is_none());
    assert_retry_after(&locked.headers);

    let signed_in = vms_login_from(&w, B, ALICE_PASSWORD).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text);
    assert!(
        signed_in.body["accessToken"].is_string(),
        "{}",
        signed_in.text
    );
}

/// alice on the `/login` form.
async fn login_form(browser: &mut Browser<'_>, password: &str) -> Page {
    let login = browser.get("/login").await;
    browser
        .submit_login("/login", &login, "alice", password)
        .await
}

/// A browser whose requests the proxy forwards for `source`.
fn browser_from<'a>(w: &'a World, source: &'static str) -> Browser<'a> {
    let mut browser = Browser::new(&w.app);
    browser
        .headers
        .insert("x-forwarded-for", HeaderValue::from_static(source));
    browser
}

/// alice on the authorization flow's login form, for a client registered with `REDIRECT`.
async fn authorize_login_form(browser: &mut Browser<'_>, client_id: &str, password: &str) -> Page {
    let query = authorize_query(client_id, &[]);
    let login = browser.get(&format!("/oauth/authorize?{query}")).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    browser
        .submit_login("/oauth/authorize/login", &login, "alice", password)
        .await
}

#[track_caller]
fn assert_locked_page(page: &Page) {
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    assert!(
        page.body.contains("Too many failed sign-ins"),
        "{}",
        page.body
    );
    assert!(page.set_cookie("kf_session").is_none());
    assert_retry_after(&page.headers);
}

/// Both login forms, Keyframe's own and the authorization flow's, share the lockout.
async fn the_login_pages_lock_only_the_guessing_source(backend: Backend) {
    let w = behind_proxy(backend)
        .client(
            ClientSpec::public("Portal")
                .redirect_uris(&[REDIRECT])
                .scopes(&["video:read"]),
        )
        .build()
        .await;
    let portal = &w.clients[1].id;
    let mut guesser = browser_from(&w, A);
    for _ in 0..3 {
        let failed = login_form(&mut guesser, "wrong").await;
        assert_eq!(failed.status, StatusCode::UNAUTHORIZED, "{}", failed.body);
    }
    assert_locked_page(&login_form(&mut guesser, ALICE_PASSWORD).await);
    assert_locked_page(&authorize_login_form(&mut guesser, portal, ALICE_PASSWORD).await);

    let mut alice = browser_from(&w, B);
    let signed_in = login_form(&mut alice, ALICE_PASSWORD).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    assert_eq!(signed_in.location(), "/tokens");
    assert!(signed_in.set_cookie("kf_session").is_some());
}

/// Guesses spread over many addresses, each under its own threshold, still add up: at the
/// per-user ceiling every source is locked, including one that never failed.
async fn the_user_ceiling_locks_every_source(backend: Backend) {
    let w = behind_proxy(backend)
        .config(|cfg| cfg.tokens.lockout_user_ceiling = 5)
        .build()
        .await;
    for _ in 0..3 {
        assert_wrong_password(&password_from(&w, A, "wrong").await);
    }
    assert_wrong_password(&password_from(&w, B, "wrong").await);
    // Four failures in all: C, which never failed, is not locked yet.
    password_from(&w, C, ALICE_PASSWORD).await.ok();
    assert_wrong_password(&password_from(&w, B, "wrong").await);
    // Five: the ceiling. B is under its own threshold and C never failed; both are locked.
    assert_locked(&password_from(&w, C, ALICE_PASSWORD).await);
    assert_locked(&password_from(&w, B, ALICE_PASSWORD).await);
}

/// Without `--trust-proxy` the header is the client's own word: varying it changes nothing,
/// every attempt counts against the peer address.
async fn forwarded_for_is_ignored_without_a_trusted_proxy(backend: Backend) {
    let w = World::token_service(backend)
        .config(|cfg| {
            cfg.tokens.lockout_threshold = 3;
            cfg.tokens.lockout_window = WINDOW;
        })
        .build()
        .await;
    for source in [A, B, C] {
        assert_wrong_password(&password_from(&w, source, "wrong").await);
    }
    assert_locked(&password_from(&w, "192.0.2.77", ALICE_PASSWORD).await);
}

// ---------------------------------------------------------------------------------------------
// Token exchange and revocation.

/// RFC 8693: the JWT never carries more than the subject token (above all not
/// `keyframe:tokens`), is issued only for Keyframe's own audience, and without delegation.
async fn token_exchange_stays_within_the_subject_token(backend: Backend) {
    let w = World::api_tokens(backend).build().await;
    let owner = w.access_token("olivia", "acme").await;
    let system = w
        .system_token(&owner, "Encoder", &["admin", "member"])
        .await;
    let subject = secret(&system);

    let narrowed = w
        .exchange_with(&subject, ACCESS_TOKEN_TYPE, &[("scope", "member")])
        .await
        .ok();
    assert_eq!(narrowed.body["scope"], "member", "{}", narrowed.text);
    assert_eq!(
        w.introspect(&narrowed.access_token()).await["scope"],
        "member"
    );
    for wider in ["admin owner", "member keyframe:tokens"] {
        w.exchange_with(&subject, ACCESS_TOKEN_TYPE, &[("scope", wider)])
            .await
            .assert_400("invalid_scope");
    }

    for target in ["audience", "resource"] {
        w.exchange_with(&subject, ACCESS_TOKEN_TYPE, &[(target, &w.app.issuer)])
            .await
            .ok();
        w.exchange_with(
            &subject,
            ACCESS_TOKEN_TYPE,
            &[(target, "https://elsewhere.example")],
        )
        .await
        .assert_400("invalid_target");
    }

    w.exchange_with(
        &subject,
        ACCESS_TOKEN_TYPE,
        &[
            ("actor_token", &owner),
            ("actor_token_type", ACCESS_TOKEN_TYPE),
        ],
    )
    .await
    .assert_400("invalid_request");
}

/// RFC 7009 §2.2.1: API tokens are revoked through their own API, so `/oauth/revoke` says it
/// does not revoke them; a silent 200 would let the caller believe the token was gone.
async fn oauth_revoke_refuses_api_tokens_and_leaves_them_working(backend: Backend) {
    let w = World::api_tokens(backend).build().await;
    let owner = w.access_token("olivia", "acme").await;
    let personal = w.personal_token(&owner, "Laptop").await;
    let system = w.system_token(&owner, "Encoder", &["member"]).await;
    for token in [&personal, &system] {
        w.app
            .revoke(w.client(), &secret(token))
            .await
            .assert_400("unsupported_token_type");
        assert_eq!(w.introspect(&secret(token)).await["active"], true);
    }
    let (status, listed) = w.list("acme", &secret(&personal)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the personal token still authenticates"
    );
    assert_eq!(
        ids(&listed).len(),
        2,
        "an owner's token lists both: {listed}"
    );
}

backend_tests!(
    only_access_tokens_with_keyframe_tokens_manage_tokens,
    api_tokens_and_their_exchanged_jwts_never_manage_tokens,
    personal_tokens_are_renewed_by_their_user_and_revoked_by_owners_and_admins,
    signing_in_never_redirects_off_the_issuer,
    signing_out_with_crlf_in_the_request_ends_the_session,
    the_token_endpoint_locks_only_the_guessing_source,
    vms_login_locks_only_the_guessing_source,
    the_login_pages_lock_only_the_guessing_source,
    the_user_ceiling_locks_every_source,
    forwarded_for_is_ignored_without_a_trusted_proxy,
    token_exchange_stays_within_the_subject_token,
    oauth_revoke_refuses_api_tokens_and_leaves_them_working,
);
