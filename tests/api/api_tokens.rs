//! API tokens: lifecycle of both kinds, role and tenant boundaries, the user-leaves-tenant
//! rule, checksum rejection, introspection and token exchange.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::{
    ids, secret, token_path, verify_with, Answer, Backend, ClientSpec, World, ACCESS_TOKEN_TYPE,
    EXCHANGE,
};

/// A token exchange whose answer, refusal or not, is JSON.
async fn exchange(w: &World, subject: &str, subject_type: &str) -> (StatusCode, Value) {
    let answer = w.exchange_with(subject, subject_type, &[]).await;
    assert!(!answer.body.is_null(), "not JSON: {}", answer.text);
    (answer.status, answer.body)
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert!(
        body["error"].is_string()
            && body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

async fn lifecycle_of_both_kinds(backend: Backend) {
    let w = World::api_tokens(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    let max = w.access_token("max", "acme").await;

    let (status, system) = w.create("acme", &olivia, json!({"name": "Encoder", "kind": "system", "roles": ["admin", "member"], "expires_at": null})).await;
    assert_eq!(status, StatusCode::CREATED, "{system}");
    assert_eq!(system["kind"], "system");
    assert_eq!(system["roles"], json!(["admin", "member"]));
    assert_eq!(system["owner"], Value::Null);
    assert!(secret(&system).starts_with("kfsat_"));

    let mine = w.personal_token(&olivia, "My laptop").await;
    assert!(secret(&mine).starts_with("kfpat_"));
    assert_eq!(mine["owner"]["username"], "olivia");
    let expires = 4_000_000_000i64;
    let (status, maxs) = w
        .create(
            "acme",
            &max,
            json!({"name": "Script", "kind": "personal", "expires_at": expires}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(maxs["expires_at"], expires);

    // The secret is shown once: lists carry metadata only.
    let (status, all) = w.list("acme", &olivia).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ids(&all).len(),
        3,
        "an owner sees system tokens and every member's personal tokens"
    );
    assert!(all["tokens"]
        .as_array()
        .expect("list")
        .iter()
        .all(|t| t.get("token").is_none()));
    for field in [
        "id",
        "name",
        "kind",
        "owner",
        "roles",
        "created_at",
        "last_used_at",
        "expires_at",
    ] {
        assert!(
            all["tokens"][0].get(field).is_some(),
            "{field} missing: {all}"
        );
    }
    let (_, own) = w.list("acme", &max).await;
    assert_eq!(
        ids(&own),
        vec![maxs["id"].as_str().expect("id").to_owned()],
        "a member sees only their own"
    );

    // API tokens authenticate on the API themselves; last use is recorded.
    let (status, listed) = w.list("acme", &secret(&maxs)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        listed["tokens"][0]["last_used_at"].as_i64().is_some(),
        "{listed}"
    );

    // They are accepted on Keyframe's other APIs too.
    let (status, vms) = w.call(Method::GET, "/v1/vms", &secret(&maxs), None).await;
    assert_eq!(status, StatusCode::OK, "{vms}");
    assert_eq!(
        vms,
        json!({"videoManagerList": [{"id": "acme", "name": "Acme"}], "validForVideoManager": "acme"})
    );
    let (status, vms) = w.call(Method::GET, "/v1/vms", &secret(&system), None).await;
    assert_eq!(status, StatusCode::OK, "{vms}");
    assert_eq!(
        vms["videoManagerList"],
        json!([{"id": "acme", "name": "Acme"}]),
        "a system token sees its tenant"
    );

    // Renew: same id, name and roles; new secret; the old one fails at once.
    let path = format!("{}/renew", token_path(&system));
    let (status, renewed) = w.call(Method::POST, &path, &olivia, None).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(
        (
            renewed["id"].clone(),
            renewed["name"].clone(),
            renewed["roles"].clone()
        ),
        (
            system["id"].clone(),
            system["name"].clone(),
            system["roles"].clone()
        )
    );
    assert_ne!(secret(&renewed), secret(&system));
    assert_eq!(
        w.introspect(&secret(&system)).await,
        json!({"active": false})
    );
    assert_eq!(w.introspect(&secret(&renewed)).await["active"], true);

    // Delete: gone for good.
    let path = token_path(&maxs);
    let (status, _) = w.call(Method::DELETE, &path, &max, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = w.list("acme", &secret(&maxs)).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    let (status, body) = w.call(Method::DELETE, &path, &olivia, None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (_, all) = w.list("acme", &olivia).await;
    assert_eq!(ids(&all).len(), 2);
}

async fn role_and_tenant_boundaries(backend: Backend) {
    let w = World::api_tokens(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    let olivia_beta = w.access_token("olivia", "beta").await;
    let max = w.access_token("max", "acme").await;

    let (status, body) = w
        .create(
            "acme",
            &max,
            json!({"name": "Nope", "kind": "system", "roles": ["member"]}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    let system = w.system_token(&olivia, "Ops", &["owner"]).await;
    let olivias = w.personal_token(&olivia, "Mine").await;

    // A member cannot touch the owner's tokens.
    for token in [&system, &olivias] {
        let path = format!("{}/renew", token_path(token));
        let (status, body) = w.call(Method::POST, &path, &max, None).await;
        assert_error(status, &body, StatusCode::FORBIDDEN);
        let (status, body) = w.call(Method::DELETE, &token_path(token), &max, None).await;
        assert_error(status, &body, StatusCode::FORBIDDEN);
    }
    // A system token, even with the owner role, mints nothing: it is not a person.
    let (status, body) = w
        .create(
            "acme",
            &secret(&system),
            json!({"name": "Child", "kind": "system", "roles": ["owner"]}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    let (status, body) = w
        .create(
            "acme",
            &secret(&system),
            json!({"name": "Child", "kind": "personal"}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);

    // Nothing of one tenant is visible or changeable from another.
    let (status, body) = w.list("beta", &olivia).await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    let (status, body) = w.list("acme", &olivia_beta).await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    let (_, in_beta) = w.list("beta", &olivia_beta).await;
    assert_eq!(
        in_beta["tokens"],
        json!([]),
        "beta has none of acme's tokens"
    );
    let path = format!(
        "/api/v1/tenants/beta/tokens/{}",
        system["id"].as_str().expect("id")
    );
    let (status, body) = w.call(Method::DELETE, &path, &olivia_beta, None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (_, all) = w.list("acme", &olivia).await;
    assert_eq!(ids(&all).len(), 2, "nothing was deleted");
}

async fn personal_tokens_die_with_the_membership(backend: Backend) {
    let w = World::api_tokens(backend).build().await;
    let max = w.access_token("max", "acme").await;
    let token = w.personal_token(&max, "Script").await;
    let token = secret(&token);
    let active = w.introspect(&token).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["token_type"], "personal_access_token");
    assert_eq!(
        active["scope"], "member",
        "a personal token acts with its owner's role"
    );
    assert_eq!(active["username"], "max");

    w.cli(&["--json", "user", "remove-tenant", "max", "acme"])
        .await;
    assert_eq!(w.introspect(&token).await, json!({"active": false}));
    let (status, body) = w.list("acme", &token).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);

    // Back in the tenant, then disabled: dead again.
    w.cli(&["--json", "user", "add-tenant", "max", "acme"])
        .await;
    assert_eq!(w.introspect(&token).await["active"], true);
    w.cli(&["--json", "user", "disable", "max"]).await;
    assert_eq!(w.introspect(&token).await, json!({"active": false}));

    // A system token survives people coming and going.
    let olivia = w.access_token("olivia", "acme").await;
    let system = w.system_token(&olivia, "Encoder", &["admin"]).await;
    w.cli(&["--json", "user", "remove-tenant", "olivia", "acme"])
        .await;
    let introspected = w.introspect(&secret(&system)).await;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["token_type"], "system_access_token");
    assert_eq!(introspected["sub"], "tenant:acme");
    assert_eq!(introspected["scope"], "admin");
}

async fn checksums_expiry_and_bad_input(backend: Backend) {
    let w = World::api_tokens(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    let token = w.personal_token(&olivia, "Mine").await;
    let good = secret(&token);
    // One character off: refused by the checksum.
    let mut typo = good.clone().into_bytes();
    let i = typo.len() - 10;
    typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).expect("ascii");
    let (status, body) = w.list("acme", &typo).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    assert_eq!(w.introspect(&typo).await, json!({"active": false}));
    let (status, body) = w.list("acme", "").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);

    let before = ids(&w.list("acme", &olivia).await.1);
    let long = "x".repeat(101);
    let cases = [
        json!({"name": "", "kind": "personal"}),
        json!({"name": long, "kind": "personal"}),
        json!({"name": "R", "kind": "system", "roles": ["root"]}),
        json!({"name": "R", "kind": "system", "roles": []}),
        json!({"name": "R", "kind": "personal", "roles": ["admin"]}),
        json!({"name": "R", "kind": "robot"}),
        json!({"name": "R", "kind": "personal", "expires_at": 1}),
        json!({"name": "R"}),
        json!({"name": "R", "kind": "personal", "surprise": true}),
    ];
    for body in cases {
        let (status, answer) = w.create("acme", &olivia, body.clone()).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST);
    }
    let request = w
        .app
        .request(Method::POST, "/api/v1/tenants/acme/tokens")
        .bearer_auth(&olivia)
        .header("Content-Type", "text/plain")
        .body("name=x");
    let answer = Answer::send(request).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        ids(&w.list("acme", &olivia).await.1),
        before,
        "nothing was written"
    );

    // Expired: 401, from the second it expires.
    let soon = w.app.clock.now() + 60;
    let (status, short) = w
        .create(
            "acme",
            &olivia,
            json!({"name": "Short", "kind": "personal", "expires_at": soon}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{short}");
    w.app.clock.advance(59);
    let (status, body) = w.list("acme", &secret(&short)).await;
    assert_eq!(status, StatusCode::OK, "a second before it expires: {body}");
    w.app.clock.advance(1);
    let (status, body) = w.list("acme", &secret(&short)).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
}

async fn token_exchange_gives_a_verifiable_jwt(backend: Backend) {
    let w = World::api_tokens(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    let system = w.system_token(&olivia, "Encoder", &["admin"]).await;
    let personal = w.personal_token(&olivia, "Mine").await;
    let olivia_id = json!(w.user_id("olivia"));
    let jwks = w.app.jwks().await;
    for (token, sub, scope) in [
        (secret(&system), json!("tenant:acme"), "admin"),
        (secret(&personal), olivia_id.clone(), "owner"),
    ] {
        let (status, exchanged) = exchange(&w, &token, ACCESS_TOKEN_TYPE).await;
        assert_eq!(status, StatusCode::OK, "{exchanged}");
        assert_eq!(exchanged["issued_token_type"], ACCESS_TOKEN_TYPE);
        assert_eq!(exchanged["token_type"], "Bearer");
        assert!(exchanged.get("refresh_token").is_none());
        let jwt = exchanged["access_token"].as_str().expect("jwt");
        // A resource server verifies it offline, with the JWKS alone.
        let claims = verify_with(&jwks, jwt, &w.app.issuer, &w.app.issuer).expect("a valid JWT");
        assert_eq!(claims["sub"], sub);
        assert_eq!(claims["tenant"], "acme");
        assert_eq!(claims["scope"], scope);
        assert_eq!(w.introspect(jwt).await["active"], true);
    }

    // Deleting the API token ends the JWTs it was traded for.
    let (_, exchanged) = exchange(&w, &secret(&system), ACCESS_TOKEN_TYPE).await;
    w.call(Method::DELETE, &token_path(&system), &olivia, None)
        .await;
    assert_eq!(
        w.introspect(exchanged["access_token"].as_str().expect("jwt"))
            .await,
        json!({"active": false})
    );

    // Refusals.
    let (status, body) = exchange(
        &w,
        &secret(&personal),
        "urn:ietf:params:oauth:token-type:refresh_token",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, body) = exchange(&w, &secret(&system), ACCESS_TOKEN_TYPE).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "a deleted token"
    );
    let (status, body) = exchange(&w, &olivia, ACCESS_TOKEN_TYPE).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "not an API token"
    );
    let other = w
        .app
        .create_client(ClientSpec::confidential("No exchange").grants(&["password"]))
        .await;
    let refused = w
        .app
        .post_form(
            "/oauth/token",
            other.auth(),
            &[
                ("grant_type", EXCHANGE),
                ("subject_token", secret(&personal).as_str()),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["error"], "unauthorized_client");
}

backend_tests!(
    lifecycle_of_both_kinds,
    role_and_tenant_boundaries,
    personal_tokens_die_with_the_membership,
    checksums_expiry_and_bad_input,
    token_exchange_gives_a_verifiable_jwt,
);
