//! The token endpoint (`POST /oauth/token`): the password and refresh grants, client
//! authentication, errors, tenants, rotation, reuse detection, grace, expiry, concurrency and
//! lockout, on both backends.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::{
    scopes, Answer, Auth, Backend, ClientSpec, TestApp, TestClient, World, ALICE_PASSWORD,
};

// ---------------------------------------------------------------------------------------------
// The password grant and what it issues.

async fn password_grant_issues_a_verifiable_token_pair(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let pair = w.sign_in(&[]).await;
    assert_eq!(pair.header("cache-control"), Some("no-store"));
    assert!(
        pair.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        pair.headers
    );
    assert_eq!(pair.body["token_type"], "Bearer");
    assert_eq!(pair.body["expires_in"], 600, "the default lifetime");
    assert!(!pair.refresh_token().is_empty());
    assert_eq!(pair.body["tenant"], "acme", "alice's default tenant");

    // The access token verifies with the served JWKS alone, for the issuer as audience.
    let jwt = pair.access_token();
    let header = jsonwebtoken::decode_header(&jwt).expect("a JWT");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert!(header.kid.is_some_and(|k| !k.is_empty()));
    let claims = w.verify(&jwt).await;
    let meta = w
        .app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(claims["iss"], meta["issuer"], "iss is the metadata issuer");
    assert_eq!(claims["iss"], w.app.issuer.as_str());
    assert_eq!(claims["sub"], w.user_id("alice"), "sub is the user's id");
    assert_eq!(
        claims["aud"],
        w.app.issuer.as_str(),
        "aud defaults to the issuer"
    );
    assert_eq!(claims["client_id"], w.client().id.as_str());
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(scopes(&claims["scope"]), ["read", "write"]);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let (iat, exp) = (
        claims["iat"].as_i64().expect("iat"),
        claims["exp"].as_i64().expect("exp"),
    );
    assert_eq!(exp - iat, 600);
    let now = keyframe::clock::now();
    assert!((iat - now).abs() <= 60, "iat {iat} is now ({now})");

    // Every sign-in is its own token: a fresh jti, a fresh refresh token.
    let again = w.sign_in(&[]).await;
    assert_ne!(
        w.verify(&again.access_token()).await["jti"],
        claims["jti"],
        "jti is unique"
    );
    assert_ne!(again.refresh_token(), pair.refresh_token());
}

async fn configured_audience_and_lifetime_reach_the_token(backend: Backend) {
    let w = World::token_service(backend)
        .config(|cfg| {
            cfg.tokens.audience = Some("https://api.example".into());
            cfg.tokens.access_token_ttl = 120;
        })
        .build()
        .await;
    let pair = w.sign_in(&[]).await;
    assert_eq!(pair.body["expires_in"], 120);
    let jwt = pair.access_token();
    let claims = w.app.verify_access_token(&jwt, "https://api.example").await;
    assert_eq!(claims["aud"], "https://api.example");
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        120
    );
    let jwks = w.app.jwks().await;
    assert!(
        crate::helpers::verify_with(&jwks, &jwt, &w.app.issuer, &w.app.issuer).is_err(),
        "with an audience configured, the issuer is not the audience"
    );
}

async fn usernames_are_case_insensitive(backend: Backend) {
    let w = World::token_service(backend).build().await;
    for name in ["ALICE", "Alice", "aLiCe"] {
        let pair = w
            .app
            .password_grant(w.client(), name, ALICE_PASSWORD, &[])
            .await
            .ok();
        assert_eq!(
            w.verify(&pair.access_token()).await["sub"],
            w.user_id("alice"),
            "{name} is alice"
        );
    }
}

async fn scope_defaults_to_the_clients_and_refuses_others(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let all = w.sign_in(&[]).await;
    assert_eq!(
        scopes(&all.body["scope"]),
        ["read", "write"],
        "omitted: all"
    );

    let read = w.sign_in(&[("scope", "read")]).await;
    assert_eq!(read.body["scope"], "read");
    assert_eq!(w.verify(&read.access_token()).await["scope"], "read");
    let both = w.sign_in(&[("scope", "write read")]).await;
    assert_eq!(scopes(&both.body["scope"]), ["read", "write"]);

    for outside in ["admin", "read admin", "READ"] {
        w.password(&[("scope", outside)])
            .await
            .assert_400("invalid_scope");
    }

    // A client registered without scopes gets tokens without a `scope` member.
    let bare = w
        .app
        .create_client(ClientSpec::confidential("Bare").grants(&["password", "refresh_token"]))
        .await;
    let pair = w.sign_in_at(&bare, &[]).await;
    assert!(
        pair.body.get("scope").is_none(),
        "an empty scope is omitted: {}",
        pair.text
    );
    w.app
        .password_grant(&bare, "alice", ALICE_PASSWORD, &[("scope", "read")])
        .await
        .assert_400("invalid_scope");
}

async fn tenant_selection_and_foreign_tenants(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let default = w.sign_in(&[]).await;
    assert_eq!(default.body["tenant"], "acme");
    let mut tenants: Vec<Value> = default.body["tenants"].as_array().expect("tenants").clone();
    tenants.sort_by_key(|t| t["id"].as_str().map(str::to_owned));
    assert_eq!(
        tenants,
        [
            json!({"id": "acme", "name": "Acme Video"}),
            json!({"id": "beta", "name": "Beta Live"})
        ],
        "every tenant alice belongs to, and no other"
    );

    let beta = w.sign_in(&[("tenant", "beta")]).await;
    assert_eq!(beta.body["tenant"], "beta");
    assert_eq!(w.verify(&beta.access_token()).await["tenant"], "beta");
    assert_eq!(beta.body["tenants"].as_array().map(Vec::len), Some(2));

    let rows = w.app.token_rows();
    for foreign in ["gamma", "nowhere"] {
        let refused = w.password(&[("tenant", foreign)]).await;
        refused.assert_400("invalid_request");
        assert!(
            refused.description().contains(foreign),
            "the description names {foreign}: {}",
            refused.text
        );
    }
    assert_eq!(w.app.token_rows(), rows, "a refused tenant issues nothing");
}

// ---------------------------------------------------------------------------------------------
// Client authentication.

async fn clients_authenticate_with_basic_post_or_none(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let grant = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", ALICE_PASSWORD),
    ];
    // client_secret_basic and client_secret_post.
    for auth in [w.client().auth(), w.client().post()] {
        let pair = w.app.post_form("/oauth/token", auth, &grant).await.ok();
        assert_eq!(
            w.verify(&pair.access_token()).await["client_id"],
            w.client().id.as_str(),
            "{auth:?}"
        );
    }

    // Basic credentials are form-urlencoded before base64 (RFC 6749 §2.3.1): the server
    // decodes them. Ours are URL-safe, so percent-encode every character by hand.
    let encode = |s: &str| -> String { s.bytes().map(|b| format!("%{b:02X}")).collect() };
    let secret = w.client().secret.as_deref().expect("secret");
    let credentials = format!("{}:{}", encode(&w.client().id), encode(secret));
    let response = w
        .app
        .http
        .post(format!("{}/oauth/token", w.app.address))
        .header(
            "Authorization",
            format!(
                "Basic {}",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, credentials)
            ),
        )
        .form(&grant)
        .send()
        .await
        .expect("request");
    Answer::from(response).await.ok();

    // none: a public client sends its client_id alone.
    let public = w
        .app
        .create_client(
            ClientSpec::public("SPA")
                .grants(&["password", "refresh_token"])
                .scopes(&["read"]),
        )
        .await;
    let pair = w
        .app
        .post_form("/oauth/token", Auth::Id(&public.id), &grant)
        .await
        .ok();
    assert_eq!(
        w.verify(&pair.access_token()).await["client_id"],
        public.id.as_str()
    );
    let next = w
        .app
        .refresh(&public, &pair.refresh_token(), &[])
        .await
        .ok();
    assert_ne!(next.refresh_token(), pair.refresh_token());
}

async fn failed_client_authentication_is_invalid_client(backend: Backend) {
    let w = World::token_service(backend)
        .config(|cfg| cfg.tokens.lockout_threshold = 1000)
        .build()
        .await;
    let grant = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", ALICE_PASSWORD),
    ];
    let secret = w.client().secret.as_deref().expect("secret");
    let unknown = "kf-unknown-client";
    for (what, auth) in [
        ("unknown client (Basic)", Auth::Basic(unknown, secret)),
        ("unknown client (post)", Auth::Post(unknown, secret)),
        ("unknown public client", Auth::Id(unknown)),
        (
            "wrong secret (Basic)",
            Auth::Basic(&w.client().id, "kf_cs_wrong"),
        ),
        (
            "wrong secret (post)",
            Auth::Post(&w.client().id, "kf_cs_wrong"),
        ),
        ("confidential without secret", Auth::Id(&w.client().id)),
        ("empty secret (Basic)", Auth::Basic(&w.client().id, "")),
        ("no client at all", Auth::Nothing),
    ] {
        let answer = w.app.post_form("/oauth/token", auth, &grant).await;
        answer.assert_invalid_client(what);
    }

    // Basic and body credentials at once.
    let mut both = grant.to_vec();
    both.extend([
        ("client_id", w.client().id.as_str()),
        ("client_secret", secret),
    ]);
    w.app
        .post_form("/oauth/token", w.client().auth(), &both)
        .await
        .assert_400("invalid_request");
}

/// Instances remember a client's row for a second: a deleted client stops authenticating
/// on a running server within that time.
async fn deleted_clients_stop_authenticating_within_a_second(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let jwt = w.sign_in(&[]).await.access_token();
    assert!(
        w.active(&jwt).await,
        "the client authenticates (and is remembered)"
    );
    let deleted = w.cli(&["--json", "client", "delete", &w.client().id]).await;
    assert_eq!(deleted["deleted"], true, "{deleted}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (path, fields) in [
        ("/oauth/introspect", vec![("token", jwt.as_str())]),
        (
            "/oauth/token",
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", ALICE_PASSWORD),
            ],
        ),
    ] {
        w.app
            .post_form(path, w.client().auth(), &fields)
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
}

async fn grants_the_client_was_not_given_are_unauthorized_client(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let refresh_only = w
        .app
        .create_client(ClientSpec::confidential("RefreshOnly").grants(&["refresh_token"]))
        .await;
    w.app
        .password_grant(&refresh_only, "alice", ALICE_PASSWORD, &[])
        .await
        .assert_400("unauthorized_client");

    // A public client with the password grant only: no refresh grant, no refresh token.
    let public = w
        .app
        .create_client(ClientSpec::public("Kiosk").grants(&["password"]))
        .await;
    let pair = w.sign_in_at(&public, &[]).await;
    assert!(pair.body.get("access_token").is_some());
    assert!(
        pair.body.get("refresh_token").is_none(),
        "no refresh grant, no refresh token: {}",
        pair.text
    );
    let real = w.sign_in(&[]).await.refresh_token();
    w.app
        .refresh(&public, &real, &[])
        .await
        .assert_400("unauthorized_client");
    w.refresh(&real, &[]).await.ok();
}

// ---------------------------------------------------------------------------------------------
// Malformed requests.

async fn malformed_requests_get_rfc_errors(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let url = format!("{}/oauth/token", w.app.address);
    let secret = w.client().secret.clone().expect("secret");
    let post = |body: Vec<u8>, content_type: &str| {
        w.app
            .http
            .post(&url)
            .basic_auth(&w.client().id, Some(&secret))
            .header("Content-Type", content_type)
            .body(body)
    };
    let form = "application/x-www-form-urlencoded";
    let pw = format!("password={}", ALICE_PASSWORD.replace(' ', "+"));
    let cases: Vec<(&str, reqwest::RequestBuilder, &str)> = vec![
        (
            "missing grant_type",
            post(format!("username=alice&{pw}").into(), form),
            "invalid_request",
        ),
        (
            "unknown grant_type",
            post(b"grant_type=implicit".to_vec(), form),
            "unsupported_grant_type",
        ),
        (
            "missing password",
            post(b"grant_type=password&username=alice".to_vec(), form),
            "invalid_request",
        ),
        (
            "missing username",
            post(format!("grant_type=password&{pw}").into(), form),
            "invalid_request",
        ),
        (
            "missing refresh_token",
            post(b"grant_type=refresh_token".to_vec(), form),
            "invalid_request",
        ),
        (
            "scope twice",
            post(
                format!("grant_type=password&username=alice&{pw}&scope=read&scope=write").into(),
                form,
            ),
            "invalid_request",
        ),
        (
            "grant_type twice",
            post(
                format!("grant_type=password&grant_type=password&username=alice&{pw}").into(),
                form,
            ),
            "invalid_request",
        ),
        (
            "username twice",
            post(
                format!("grant_type=password&username=alice&username=alice&{pw}").into(),
                form,
            ),
            "invalid_request",
        ),
        (
            "JSON body",
            post(
                serde_json::to_vec(&json!({
                    "grant_type": "password", "username": "alice", "password": ALICE_PASSWORD
                }))
                .expect("json"),
                "application/json",
            ),
            "invalid_request",
        ),
        (
            "invalid UTF-8",
            post(
                [
                    b"grant_type=password&username=\xff\xfe&".as_slice(),
                    pw.as_bytes(),
                ]
                .concat(),
                form,
            ),
            "invalid_request",
        ),
    ];
    let rows = w.app.token_rows();
    for (what, request, error) in cases {
        let answer = Answer::from(request.send().await.expect("request")).await;
        assert!(
            answer.status == StatusCode::BAD_REQUEST && answer.body["error"] == error,
            "{what}: expected 400 {error}, got {} {}",
            answer.status,
            answer.text
        );
        answer.assert_400(error);
    }
    assert_eq!(w.app.token_rows(), rows, "nothing was issued");
}

async fn oversized_bodies_are_refused_with_413(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let url = format!("{}/oauth/token", w.app.address);
    let secret = w.client().secret.clone().expect("secret");
    let grant = format!(
        "grant_type=password&username=alice&password={}",
        ALICE_PASSWORD.replace(' ', "+")
    );
    let request = |body: reqwest::Body| {
        w.app
            .http
            .post(&url)
            .basic_auth(&w.client().id, Some(&secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    };

    // With a Content-Length over 64 KiB.
    let big = format!("{grant}&padding={}", "a".repeat(65 * 1024));
    let answer = Answer::from(request(big.into()).send().await.expect("request")).await;
    answer.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request");

    // Chunked, without a Content-Length to refuse up front.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        std::iter::once(Ok(format!("{grant}&padding=").into_bytes()))
            .chain((0..70).map(|_| Ok(vec![b'a'; 1024])))
            .collect();
    let chunked = request(reqwest::Body::wrap_stream(futures_util::stream::iter(
        chunks,
    )));
    let answer = Answer::from(chunked.send().await.expect("request")).await;
    answer.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request");

    // Just under the limit is fine: unknown parameters are ignored (RFC 6749 §3.2).
    let under = format!("{grant}&padding={}", "a".repeat(60 * 1024));
    Answer::from(request(under.into()).send().await.expect("request"))
        .await
        .ok();
}

// ---------------------------------------------------------------------------------------------
// The refresh grant.

async fn refresh_rotates_narrows_scope_and_switches_tenant(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let first = w.sign_in(&[]).await;
    let second = w.refresh(&first.refresh_token(), &[]).await.ok();
    assert_eq!(second.header("cache-control"), Some("no-store"));
    assert_ne!(second.refresh_token(), first.refresh_token(), "rotated");
    assert_ne!(second.access_token(), first.access_token());
    assert_eq!(second.body["token_type"], "Bearer");
    assert_eq!(second.body["expires_in"], 600);
    assert_eq!(second.body["tenant"], "acme");
    assert_eq!(second.body["tenants"].as_array().map(Vec::len), Some(2));
    assert_eq!(scopes(&second.body["scope"]), ["read", "write"]);
    let claims = w.verify(&second.access_token()).await;
    assert_eq!(claims["sub"], w.user_id("alice"));
    assert_eq!(claims["tenant"], "acme");
    // The old refresh token is dead (the family is, too: that is reuse; see below).
    w.refresh(&first.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");

    // A fresh family: narrow the scope, then switch tenant.
    let pair = w.sign_in(&[]).await;
    let narrowed = w
        .refresh(&pair.refresh_token(), &[("scope", "read")])
        .await
        .ok();
    assert_eq!(narrowed.body["scope"], "read");
    assert_eq!(w.verify(&narrowed.access_token()).await["scope"], "read");
    let switched = w
        .refresh(&narrowed.refresh_token(), &[("tenant", "beta")])
        .await
        .ok();
    assert_eq!(switched.body["tenant"], "beta");
    let claims = w.verify(&switched.access_token()).await;
    assert_eq!(claims["tenant"], "beta");
    assert_eq!(claims["sub"], w.user_id("alice"));
    let back = w
        .refresh(&switched.refresh_token(), &[("tenant", "acme")])
        .await
        .ok();
    assert_eq!(w.verify(&back.access_token()).await["tenant"], "acme");
}

async fn refused_refreshes_change_nothing(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let pair = w.sign_in(&[("scope", "read")]).await;
    let token = pair.refresh_token();
    let other = w
        .app
        .create_client(
            ClientSpec::confidential("Other")
                .grants(&["password", "refresh_token"])
                .scopes(&["read", "write"]),
        )
        .await;

    // Widening beyond what was granted.
    for wider in ["read write", "write", "admin"] {
        w.refresh(&token, &[("scope", wider)])
            .await
            .assert_400("invalid_scope");
    }
    // A tenant alice is not a member of, or that does not exist.
    for foreign in ["gamma", "nowhere"] {
        let refused = w.refresh(&token, &[("tenant", foreign)]).await;
        refused.assert_400("invalid_request");
        assert!(refused.description().contains(foreign), "{}", refused.text);
    }
    // Another client presenting it.
    w.app
        .refresh(&other, &token, &[])
        .await
        .assert_400("invalid_grant");
    // Unknown and malformed refresh tokens.
    for junk in ["kf_rt_unknown", "garbage", &format!("{token}x")] {
        w.refresh(junk, &[]).await.assert_400("invalid_grant");
    }

    // None of that touched the token or its family.
    assert!(w.active(&pair.access_token()).await);
    let next = w.refresh(&token, &[]).await.ok();
    assert_eq!(next.body["scope"], "read");
    assert_eq!(next.body["tenant"], "acme");
    assert!(w.active(&pair.access_token()).await);
}

async fn reuse_revokes_the_whole_family(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let first = w.sign_in(&[]).await;
    let second = w.refresh(&first.refresh_token(), &[]).await.ok();
    let third = w
        .refresh(&second.refresh_token(), &[("tenant", "beta")])
        .await
        .ok();
    let bystander = w.sign_in(&[]).await;
    for pair in [&first, &second, &third] {
        assert!(w.active(&pair.access_token()).await);
    }

    // The first token again: reuse.
    w.refresh(&first.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
    // The newest refresh token of the chain is dead too, and every access token of the family.
    w.refresh(&third.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
    for pair in [&first, &second, &third] {
        assert!(!w.active(&pair.access_token()).await, "revoked family");
    }
    assert!(!w.active(&third.refresh_token()).await);

    // Another sign-in is another family: untouched.
    assert!(w.active(&bystander.access_token()).await);
    w.refresh(&bystander.refresh_token(), &[]).await.ok();
}

async fn reuse_within_the_grace_period_refuses_without_revoking(backend: Backend) {
    let w = World::token_service(backend)
        .config(|cfg| cfg.tokens.refresh_reuse_grace = 60)
        .build()
        .await;
    let first = w.sign_in(&[]).await;
    let second = w.refresh(&first.refresh_token(), &[]).await.ok();
    // The same client races with the just-rotated token: refused...
    w.refresh(&first.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
    // ...but the family lives on.
    assert!(w.active(&second.access_token()).await, "family not revoked");
    let third = w.refresh(&second.refresh_token(), &[]).await.ok();
    assert!(w.active(&third.access_token()).await);
}

/// The token service with refresh tokens that expire after `idle` seconds unused, or `absolute`
/// seconds after the sign-in.
async fn refresh_lifetimes(backend: Backend, idle: i64, absolute: i64) -> World {
    World::token_service(backend)
        .config(move |cfg| {
            cfg.tokens.refresh_token_idle_ttl = idle;
            cfg.tokens.refresh_token_ttl = absolute;
        })
        .build()
        .await
}

async fn refresh_tokens_expire_when_idle(backend: Backend) {
    let w = refresh_lifetimes(backend, 60, 3600).await;
    let pair = w.sign_in(&[]).await;
    w.app.clock.advance(59);
    let used = w.refresh(&pair.refresh_token(), &[]).await.ok();
    w.app.clock.advance(60);
    w.refresh(&used.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
}

async fn refresh_tokens_expire_absolutely(backend: Backend) {
    let w = refresh_lifetimes(backend, 3600, 100).await;
    let pair = w.sign_in(&[]).await;
    w.app.clock.advance(60);
    let rotated = w.refresh(&pair.refresh_token(), &[]).await.ok();
    // Rotation does not extend the sign-in's lifetime.
    w.app.clock.advance(40);
    w.refresh(&rotated.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
}

// ---------------------------------------------------------------------------------------------
// Concurrency.

/// Sends the same refresh token `per_app` times to each app, all released at once; returns
/// every answer. Each request has its own client whose connection is opened beforehand, so
/// that the requests reach the server together rather than one connection set-up apart.
async fn race_refresh(
    apps: &[&TestApp],
    per_app: usize,
    client: &TestClient,
    token: &str,
) -> Vec<(StatusCode, Value)> {
    let start = Arc::new(tokio::sync::Barrier::new(apps.len() * per_app));
    let mut tasks = Vec::new();
    for app in apps {
        for _ in 0..per_app {
            let address = app.address.clone();
            let (id, secret) = (client.id.clone(), client.secret.clone());
            let (token, start) = (token.to_owned(), start.clone());
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .expect("client");
                let warm = http
                    .get(format!("{address}/healthz"))
                    .send()
                    .await
                    .expect("warm-up");
                assert!(warm.status().is_success());
                warm.bytes().await.expect("warm-up body");
                start.wait().await;
                let response = http
                    .post(format!("{address}/oauth/token"))
                    .basic_auth(id, secret)
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", token.as_str()),
                    ])
                    .send()
                    .await
                    .expect("request");
                let answer = Answer::from(response).await;
                (answer.status, answer.body)
            }));
        }
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
}

/// Exactly one winner, every other answer a proper `invalid_grant`, and afterwards the family
/// is revoked: the winner's new pair is dead too.
async fn assert_one_winner_then_revoked(w: &World, answers: Vec<(StatusCode, Value)>) {
    let total = answers.len();
    let mut winners = Vec::new();
    for (status, body) in answers {
        if status == StatusCode::OK {
            winners.push(body);
            continue;
        }
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{body}"
        );
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of {total} concurrent refreshes succeeds: {winners:?}"
    );
    let winner = &winners[0];
    w.refresh(
        winner["refresh_token"].as_str().expect("refresh_token"),
        &[],
    )
    .await
    .assert_400("invalid_grant");
    assert!(
        !w.active(winner["access_token"].as_str().expect("access_token"))
            .await
    );
}

async fn twenty_concurrent_refreshes_succeed_once(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let token = w.sign_in(&[]).await.refresh_token();
    let answers = race_refresh(&[&w.app], 20, w.client(), &token).await;
    assert_one_winner_then_revoked(&w, answers).await;
}

backend_tests!(
    password_grant_issues_a_verifiable_token_pair,
    configured_audience_and_lifetime_reach_the_token,
    usernames_are_case_insensitive,
    scope_defaults_to_the_clients_and_refuses_others,
    tenant_selection_and_foreign_tenants,
    clients_authenticate_with_basic_post_or_none,
    failed_client_authentication_is_invalid_client,
    grants_the_client_was_not_given_are_unauthorized_client,
    malformed_requests_get_rfc_errors,
    oversized_bodies_are_refused_with_413,
    refresh_rotates_narrows_scope_and_switches_tenant,
    refused_refreshes_change_nothing,
    reuse_revokes_the_whole_family,
    reuse_within_the_grace_period_refuses_without_revoking,
    refresh_tokens_expire_when_idle,
    refresh_tokens_expire_absolutely,
    twenty_concurrent_refreshes_succeed_once,
);

/// The same race across two instances sharing one PostgreSQL, 10 requests each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KEYFRAME_TEST_POSTGRES_URL"]
async fn twenty_concurrent_refreshes_across_two_instances_on_postgres() {
    let w = World::token_service(Backend::Postgres).build().await;
    let twin = w.app.spawn_twin().await;
    let token = w.sign_in(&[]).await.refresh_token();
    let answers = race_refresh(&[&w.app, &twin], 10, w.client(), &token).await;
    assert_one_winner_then_revoked(&w, answers).await;
}

/// Fifty requests presenting one refresh token over four instances of one PostgreSQL, all
/// released at once: exactly one rotation, and the family revoked for the other 49.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KEYFRAME_TEST_POSTGRES_URL"]
async fn fifty_concurrent_refreshes_across_four_instances_on_postgres() {
    let w = World::token_service(Backend::Postgres).build().await;
    let (b, c, d) = (
        w.app.spawn_twin().await,
        w.app.spawn_twin().await,
        w.app.spawn_twin().await,
    );
    let token = w.sign_in(&[]).await.refresh_token();
    // 10 requests on each of b, c and d, 20 on the first instance: 50 released together.
    let answers = race_refresh(&[&w.app, &b, &c, &d, &w.app], 10, w.client(), &token).await;
    assert_eq!(answers.len(), 50);
    assert_one_winner_then_revoked(&w, answers).await;
}

/// Issued at one instance, refreshed at the other; reuse seen by one revokes at the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KEYFRAME_TEST_POSTGRES_URL"]
async fn two_instances_share_token_state_on_postgres() {
    let w = World::token_service(Backend::Postgres).build().await;
    let twin = w.app.spawn_twin().await;
    let pair = w.sign_in(&[]).await;
    let rotated = twin
        .refresh(w.client(), &pair.refresh_token(), &[])
        .await
        .ok();
    assert_eq!(
        twin.introspect(w.client(), &rotated.access_token()).await["active"],
        true
    );
    assert_eq!(
        twin.verify_access_token(&pair.access_token(), &w.app.issuer)
            .await["sub"],
        w.user_id("alice")
    );
    // Reuse at the first instance.
    w.refresh(&pair.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
    assert_eq!(
        twin.introspect(w.client(), &rotated.access_token()).await,
        json!({"active": false}),
        "reuse seen by one instance revokes at the other"
    );
    twin.refresh(w.client(), &rotated.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
}

// ---------------------------------------------------------------------------------------------
// Password grant safety and lockout.

/// SQLite's own checkpoints ran inside commits while every other writer waited; `serve`
/// checkpoints in the background instead, and under a steady stream of writes, which passive
/// checkpoints alone never catch up with, the log must still start over once it passes
/// `--sqlite-max-log-mb` rather than grow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_log_starts_over_past_its_limit_under_load() {
    const LIMIT: u64 = 1024 * 1024;
    let w = World::token_service(Backend::Sqlite)
        .config(|cfg| cfg.sqlite_max_log_bytes = LIMIT)
        .build()
        .await;
    let wal = format!("{}-wal", w.app.db_url);
    let mut chains = Vec::new();
    for _ in 0..8 {
        chains.push(w.sign_in(&[]).await.refresh_token());
    }
    // Each rotation appends a few 4 KiB pages: 8 chains of 100 make ~10 MiB of log if it never
    // starts over. The size is read while the writers are still busy.
    let rotations = chains.into_iter().map(|mut token| {
        let (w, wal) = (&w, &wal);
        async move {
            for _ in 0..100 {
                token = w.refresh(&token, &[]).await.ok().refresh_token();
            }
            std::fs::metadata(wal).expect("the -wal file").len()
        }
    });
    let sizes = futures_util::future::join_all(rotations).await;
    let largest = sizes.iter().max().copied().unwrap_or_default();
    assert!(
        largest < 4 * LIMIT,
        "the log grew to {largest} bytes under load (limit {LIMIT})"
    );
    // Once writes pause, the log is copied completely, and the next write starts it over and
    // cuts the file back to the limit. The pause is real time: it is the server's own
    // background checkpoint timer under test.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let token = w.sign_in(&[]).await.refresh_token();
    w.refresh(&token, &[]).await.ok();
    let size = std::fs::metadata(&wal).expect("the -wal file").len();
    assert!(size <= LIMIT, "the log file is {size} bytes after a pause");
}

async fn failed_sign_ins_all_look_alike(backend: Backend) {
    let w = World::token_service(backend)
        .config(|cfg| cfg.tokens.lockout_threshold = 1000)
        .build()
        .await;
    w.app
        .create_user("dave", "dave's password", &["acme"])
        .await;
    w.cli(&["--json", "user", "disable", "dave"]).await;
    let attempt = |user: &'static str, password: &'static str| {
        let w = &w;
        async move { w.app.password_grant(w.client(), user, password, &[]).await }
    };
    let wrong = attempt("alice", "wrong password").await;
    wrong.assert_400("invalid_grant");
    let unknown = attempt("nobody", "wrong password").await;
    unknown.assert_400("invalid_grant");
    let disabled = attempt("dave", "dave's password").await;
    disabled.assert_400("invalid_grant");
    assert_eq!(
        unknown.body, wrong.body,
        "an unknown user looks like a wrong password"
    );
    assert_eq!(
        disabled.body, wrong.body,
        "a disabled user looks like a wrong password"
    );
}

async fn lockout_after_threshold_failures(backend: Backend) {
    let w = World::token_service(backend)
        .config(|cfg| cfg.tokens.lockout_threshold = 3)
        .build()
        .await;
    let attempt = |user: &'static str, password: &'static str| {
        let w = &w;
        async move { w.app.password_grant(w.client(), user, password, &[]).await }
    };
    // Three failures, in any letter case, lock the one username.
    for name in ["alice", "ALICE", "Alice"] {
        let failed = attempt(name, "wrong password").await;
        failed.assert_400("invalid_grant");
        assert!(
            !failed.description().contains("temporarily locked"),
            "locked too early: {}",
            failed.text
        );
    }
    for name in ["alice", "aLiCe"] {
        let locked = attempt(name, ALICE_PASSWORD).await;
        locked.assert_400("invalid_grant");
        assert!(
            locked.description().contains("temporarily locked"),
            "{}",
            locked.text
        );
    }
    // Other usernames are not affected.
    w.app.create_user("bob", "bob's password", &["acme"]).await;
    attempt("bob", "bob's password").await.ok();

    // Names that do not exist lock the same way.
    for _ in 0..3 {
        let failed = attempt("ghost", "x").await;
        assert!(
            !failed.description().contains("temporarily locked"),
            "{}",
            failed.text
        );
    }
    let locked = attempt("ghost", "x").await;
    locked.assert_400("invalid_grant");
    assert!(
        locked.description().contains("temporarily locked"),
        "{}",
        locked.text
    );
}

async fn a_successful_sign_in_clears_the_failures(backend: Backend) {
    let w = World::token_service(backend)
        .config(|cfg| cfg.tokens.lockout_threshold = 3)
        .build()
        .await;
    for _ in 0..3 {
        // Two failures, then a success: never three failures since the last success.
        for _ in 0..2 {
            w.app
                .password_grant(w.client(), "alice", "wrong password", &[])
                .await
                .assert_400("invalid_grant");
        }
        w.sign_in(&[]).await;
    }
}

/// The window is passed on the server's clock: slow argon2 in a debug build on a busy machine
/// once let the first failure fall out of a 2-second window on a real clock before the
/// lockout was even checked.
async fn lockout_ends_after_the_window(backend: Backend) {
    const WINDOW: i64 = 60;
    let w = World::token_service(backend)
        .config(|cfg| {
            cfg.tokens.lockout_threshold = 2;
            cfg.tokens.lockout_window = WINDOW;
        })
        .build()
        .await;
    for _ in 0..2 {
        w.app
            .password_grant(w.client(), "alice", "wrong password", &[])
            .await
            .assert_400("invalid_grant");
    }
    let locked = w.password(&[]).await;
    locked.assert_400("invalid_grant");
    assert!(
        locked.description().contains("temporarily locked"),
        "{}",
        locked.text
    );
    w.app.clock.advance(WINDOW - 1);
    w.password(&[]).await.assert_400("invalid_grant");
    w.app.clock.advance(1);
    w.sign_in(&[]).await;
}

backend_tests!(
    deleted_clients_stop_authenticating_within_a_second,
    failed_sign_ins_all_look_alike,
    lockout_after_threshold_failures,
    a_successful_sign_in_clears_the_failures,
    lockout_ends_after_the_window,
);
