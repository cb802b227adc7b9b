//! API tokens: lifecycle of both kinds, role and tenant boundaries, the user-leaves-tenant
//! rule, checksum rejection, introspection and token exchange.

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::{keyframe, Answer, Auth, Backend, TestApp, TestClient, TestDb};

pub(crate) const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

pub(crate) struct World {
    pub(crate) app: TestApp,
    url: String,
    client_id: String,
    client_secret: String,
}

/// Tenants acme and beta; olivia owns acme and is a member of beta, max is a member of acme;
/// a confidential client with the password and token-exchange grants and `keyframe:tokens`.
pub(crate) async fn world(backend: Backend) -> World {
    let db = TestDb::new(backend).expect("database");
    let url = db.url.clone();
    keyframe(
        &url,
        &["--json", "tenant", "create", "acme", "--name", "Acme"],
        None,
    )
    .await
    .json();
    keyframe(
        &url,
        &["--json", "tenant", "create", "beta", "--name", "Beta"],
        None,
    )
    .await
    .json();
    let args = [
        "--json",
        "user",
        "create",
        "olivia",
        "--password-stdin",
        "--tenant",
        "acme:owner",
        "--tenant",
        "beta",
    ];
    keyframe(&url, &args, Some("olivia-pw")).await.json();
    let args = [
        "--json",
        "user",
        "create",
        "max",
        "--password-stdin",
        "--tenant",
        "acme:member",
    ];
    keyframe(&url, &args, Some("max-pw")).await.json();
    let args = [
        "--json",
        "client",
        "create",
        "--name",
        "Backend",
        "--grant-type",
        "password",
        "--grant-type",
        EXCHANGE,
        // A first-party client: its access tokens may manage API tokens.
        "--scope",
        "keyframe:tokens",
    ];
    let client = keyframe(&url, &args, None).await.json();
    World {
        app: TestApp::spawn_on(db, &|_| {}).await,
        url,
        client_id: client["client_id"].as_str().expect("id").to_owned(),
        client_secret: client["client_secret"].as_str().expect("secret").to_owned(),
    }
}

impl World {
    /// The first-party client (password, token exchange, `keyframe:tokens`).
    pub(crate) fn client(&self) -> TestClient {
        TestClient {
            id: self.client_id.clone(),
            secret: Some(self.client_secret.clone()),
        }
    }

    pub(crate) async fn access_token(
        &self,
        username: &str,
        password: &str,
        tenant: &str,
    ) -> String {
        let response = self
            .app
            .http
            .post(format!("{}/oauth/token", self.app.address))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
                ("tenant", tenant),
            ])
            .send()
            .await
            .expect("token");
        let body: Value = response.json().await.expect("json");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_owned()
    }

    /// The whole answer, headers included.
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .app
            .http
            .request(method, format!("{}{path}", self.app.address))
            .bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Answer::from(request.send().await.expect("request")).await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let answer = self.send(method, path, bearer, body).await;
        (
            answer.status,
            if answer.text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&answer.text).expect("JSON")
            },
        )
    }

    pub(crate) async fn create(
        &self,
        tenant: &str,
        bearer: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::POST,
            &format!("/api/v1/tenants/{tenant}/tokens"),
            bearer,
            Some(body),
        )
        .await
    }

    pub(crate) async fn list(&self, tenant: &str, bearer: &str) -> (StatusCode, Value) {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/tenants/{tenant}/tokens"),
            bearer,
            None,
        )
        .await
    }

    pub(crate) async fn introspect(&self, token: &str) -> Value {
        self.app
            .http
            .post(format!("{}/oauth/introspect", self.app.address))
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspect")
            .json()
            .await
            .expect("json")
    }

    async fn exchange(&self, subject: &str, subject_type: &str) -> (StatusCode, Value) {
        let answer = self.exchange_with(subject, subject_type, &[]).await;
        assert!(!answer.body.is_null(), "not JSON: {}", answer.text);
        (answer.status, answer.body)
    }

    /// A token exchange by the first-party client, with `extra` form fields.
    pub(crate) async fn exchange_with(
        &self,
        subject: &str,
        subject_type: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut fields = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", subject_type),
        ];
        fields.extend_from_slice(extra);
        self.app
            .post_form(
                "/oauth/token",
                Auth::Basic(&self.client_id, &self.client_secret),
                &fields,
            )
            .await
    }
}

pub(crate) fn secret(body: &Value) -> String {
    body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {body}"))
        .to_owned()
}

pub(crate) fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
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
    let w = world(backend).await;
    let olivia = w.access_token("olivia", "olivia-pw", "acme").await;
    let max = w.access_token("max", "max-pw", "acme").await;

    let (status, system) = w.create("acme", &olivia, json!({"name": "Encoder", "kind": "system", "roles": ["admin", "member"], "expires_at": null})).await;
    assert_eq!(status, StatusCode::CREATED, "{system}");
    assert_eq!(system["kind"], "system");
    assert_eq!(system["roles"], json!(["admin", "member"]));
    assert_eq!(system["owner"], Value::Null);
    assert!(secret(&system).starts_with("kfsat_"));

    let (status, mine) = w
        .create(
            "acme",
            &olivia,
            json!({"name": "My laptop", "kind": "personal"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
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
    let (status, vms) = w
        .call(reqwest::Method::GET, "/v1/vms", &secret(&maxs), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{vms}");
    assert_eq!(
        vms,
        json!({"videoManagerList": [{"id": "acme", "name": "Acme"}], "validForVideoManager": "acme"})
    );
    let (status, vms) = w
        .call(reqwest::Method::GET, "/v1/vms", &secret(&system), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{vms}");
    assert_eq!(
        vms["videoManagerList"],
        json!([{"id": "acme", "name": "Acme"}]),
        "a system token sees its tenant"
    );

    // Renew: same id, name and roles; new secret; the old one fails at once.
    let path = format!(
        "/api/v1/tenants/acme/tokens/{}/renew",
        system["id"].as_str().expect("id")
    );
    let (status, renewed) = w.call(reqwest::Method::POST, &path, &olivia, None).await;
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
    let path = format!(
        "/api/v1/tenants/acme/tokens/{}",
        maxs["id"].as_str().expect("id")
    );
    let (status, _) = w.call(reqwest::Method::DELETE, &path, &max, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = w.list("acme", &secret(&maxs)).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);
    let (status, body) = w.call(reqwest::Method::DELETE, &path, &olivia, None).await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (_, all) = w.list("acme", &olivia).await;
    assert_eq!(ids(&all).len(), 2);
}

async fn role_and_tenant_boundaries(backend: Backend) {
    let w = world(backend).await;
    let olivia = w.access_token("olivia", "olivia-pw", "acme").await;
    let olivia_beta = w.access_token("olivia", "olivia-pw", "beta").await;
    let max = w.access_token("max", "max-pw", "acme").await;

    let (status, body) = w
        .create(
            "acme",
            &max,
            json!({"name": "Nope", "kind": "system", "roles": ["member"]}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN);
    let (_, system) = w
        .create(
            "acme",
            &olivia,
            json!({"name": "Ops", "kind": "system", "roles": ["owner"]}),
        )
        .await;
    let (_, olivias) = w
        .create("acme", &olivia, json!({"name": "Mine", "kind": "personal"}))
        .await;

    // A member cannot touch the owner's tokens.
    for id in [&system["id"], &olivias["id"]] {
        let path = format!(
            "/api/v1/tenants/acme/tokens/{}/renew",
            id.as_str().expect("id")
        );
        let (status, body) = w.call(reqwest::Method::POST, &path, &max, None).await;
        assert_error(status, &body, StatusCode::FORBIDDEN);
        let path = format!("/api/v1/tenants/acme/tokens/{}", id.as_str().expect("id"));
        let (status, body) = w.call(reqwest::Method::DELETE, &path, &max, None).await;
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
    let (status, body) = w
        .call(reqwest::Method::DELETE, &path, &olivia_beta, None)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND);
    let (_, all) = w.list("acme", &olivia).await;
    assert_eq!(ids(&all).len(), 2, "nothing was deleted");
}

async fn personal_tokens_die_with_the_membership(backend: Backend) {
    let w = world(backend).await;
    let max = w.access_token("max", "max-pw", "acme").await;
    let (_, token) = w
        .create("acme", &max, json!({"name": "Script", "kind": "personal"}))
        .await;
    let token = secret(&token);
    let active = w.introspect(&token).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["token_type"], "personal_access_token");
    assert_eq!(
        active["scope"], "member",
        "a personal token acts with its owner's role"
    );
    assert_eq!(active["username"], "max");

    keyframe(
        &w.url,
        &["--json", "user", "remove-tenant", "max", "acme"],
        None,
    )
    .await
    .json();
    assert_eq!(w.introspect(&token).await, json!({"active": false}));
    let (status, body) = w.list("acme", &token).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED);

    // Back in the tenant, then disabled: dead again.
    keyframe(
        &w.url,
        &["--json", "user", "add-tenant", "max", "acme"],
        None,
    )
    .await
    .json();
    assert_eq!(w.introspect(&token).await["active"], true);
    keyframe(&w.url, &["--json", "user", "disable", "max"], None)
        .await
        .json();
    assert_eq!(w.introspect(&token).await, json!({"active": false}));

    // A system token survives people coming and going.
    let olivia = w.access_token("olivia", "olivia-pw", "acme").await;
    let (_, system) = w
        .create(
            "acme",
            &olivia,
            json!({"name": "Encoder", "kind": "system", "roles": ["admin"]}),
        )
        .await;
    keyframe(
        &w.url,
        &["--json", "user", "remove-tenant", "olivia", "acme"],
        None,
    )
    .await
    .json();
    let introspected = w.introspect(&secret(&system)).await;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["token_type"], "system_access_token");
    assert_eq!(introspected["sub"], "tenant:acme");
    assert_eq!(introspected["scope"], "admin");
}

async fn checksums_expiry_and_bad_input(backend: Backend) {
    let w = world(backend).await;
    let olivia = w.access_token("olivia", "olivia-pw", "acme").await;
    let (_, token) = w
        .create("acme", &olivia, json!({"name": "Mine", "kind": "personal"}))
        .await;
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
    let response = w
        .app
        .http
        .post(format!("{}/api/v1/tenants/acme/tokens", w.app.address))
        .bearer_auth(&olivia)
        .header("Content-Type", "text/plain")
        .body("name=x")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
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
    let w = world(backend).await;
    let olivia = w.access_token("olivia", "olivia-pw", "acme").await;
    let (_, system) = w
        .create(
            "acme",
            &olivia,
            json!({"name": "Encoder", "kind": "system", "roles": ["admin"]}),
        )
        .await;
    let (_, personal) = w
        .create("acme", &olivia, json!({"name": "Mine", "kind": "personal"}))
        .await;
    let users = keyframe(&w.url, &["--json", "user", "list"], None)
        .await
        .json();
    let olivia_id = users["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["username"] == "olivia")
        .expect("olivia")["id"]
        .clone();

    let jwks: Value = w
        .app
        .http
        .get(format!("{}/oauth/jwks", w.app.address))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    for (token, sub, scope) in [
        (secret(&system), json!("tenant:acme"), "admin"),
        (secret(&personal), olivia_id.clone(), "owner"),
    ] {
        let (status, exchanged) = w.exchange(&token, ACCESS_TOKEN_TYPE).await;
        assert_eq!(status, StatusCode::OK, "{exchanged}");
        assert_eq!(exchanged["issued_token_type"], ACCESS_TOKEN_TYPE);
        assert_eq!(exchanged["token_type"], "Bearer");
        assert!(exchanged.get("refresh_token").is_none());
        let jwt = exchanged["access_token"].as_str().expect("jwt");
        // A resource server verifies it offline, with the JWKS alone.
        let header = decode_header(jwt).expect("header");
        let kid = header.kid.expect("kid");
        let key = jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .expect("key in JWKS");
        let decoding = DecodingKey::from_ec_components(
            key["x"].as_str().expect("x"),
            key["y"].as_str().expect("y"),
        )
        .expect("key");
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&w.app.issuer]);
        validation.set_audience(&[&w.app.issuer]);
        let claims = decode::<Value>(jwt, &decoding, &validation)
            .expect("a valid JWT")
            .claims;
        assert_eq!(claims["sub"], sub);
        assert_eq!(claims["tenant"], "acme");
        assert_eq!(claims["scope"], scope);
        assert_eq!(w.introspect(jwt).await["active"], true);
    }

    // Deleting the API token ends the JWTs it was traded for.
    let (_, exchanged) = w.exchange(&secret(&system), ACCESS_TOKEN_TYPE).await;
    let path = format!(
        "/api/v1/tenants/acme/tokens/{}",
        system["id"].as_str().expect("id")
    );
    w.call(reqwest::Method::DELETE, &path, &olivia, None).await;
    assert_eq!(
        w.introspect(exchanged["access_token"].as_str().expect("jwt"))
            .await,
        json!({"active": false})
    );

    // Refusals.
    let (status, body) = w
        .exchange(
            &secret(&personal),
            "urn:ietf:params:oauth:token-type:refresh_token",
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let (status, body) = w.exchange(&secret(&system), ACCESS_TOKEN_TYPE).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "a deleted token"
    );
    let (status, body) = w.exchange(&olivia, ACCESS_TOKEN_TYPE).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request")),
        "not an API token"
    );
    let args = [
        "--json",
        "client",
        "create",
        "--name",
        "No exchange",
        "--grant-type",
        "password",
    ];
    let other = keyframe(&w.url, &args, None).await.json();
    let response = w
        .app
        .http
        .post(format!("{}/oauth/token", w.app.address))
        .basic_auth(
            other["client_id"].as_str().expect("id"),
            other["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", EXCHANGE),
            ("subject_token", secret(&personal).as_str()),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ])
        .send()
        .await
        .expect("exchange");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<Value>().await.expect("json")["error"],
        "unauthorized_client"
    );
}

backend_tests!(
    lifecycle_of_both_kinds,
    role_and_tenant_boundaries,
    personal_tokens_die_with_the_membership,
    checksums_expiry_and_bad_input,
    token_exchange_gives_a_verifiable_jwt,
);
