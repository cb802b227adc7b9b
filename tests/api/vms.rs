//! The VideoManager-compatible API, with the documented requests (as valid JSON).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::{claims, Answer, Backend, ClientSpec, TestApp, World, WorldBuilder};

/// Tenants acme (alice's default), beta and gamma; user alice in acme and beta, user bob in
/// acme only.
fn seeded(backend: Backend) -> WorldBuilder {
    World::builder(backend)
        .alice_in_acme_and_beta("alice-pw")
        .tenant("gamma", "Gamma")
        .user("bob", "bob-pw", &["acme"])
}

/// The status and JSON body of an answer that must be JSON.
fn json_of(answer: Answer) -> (StatusCode, Value) {
    assert!(!answer.body.is_null(), "not a JSON body: {}", answer.text);
    (answer.status, answer.body)
}

async fn post_json(app: &TestApp, path: &str, body: &str) -> Answer {
    let request = app
        .request(Method::POST, path)
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    Answer::send(request).await
}

async fn login(app: &TestApp, username: &str, password: &str) -> (StatusCode, Value) {
    let body = json!({ "username": username, "password": password }).to_string();
    json_of(post_json(app, "/v1/vms/auth/login", &body).await)
}

async fn refresh(app: &TestApp, video_manager: &str, token: &str) -> (StatusCode, Value) {
    let path = format!("/v1/vms/auth/refresh/{video_manager}");
    json_of(post_json(app, &path, &json!({ "refreshToken": token }).to_string()).await)
}

async fn list(app: &TestApp, access_token: &str) -> (StatusCode, Value) {
    json_of(app.bearer(Method::GET, "/v1/vms", access_token, None).await)
}

fn assert_error(body: &Value, error: &str) {
    assert_eq!(body["error"], error, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        body.as_object().map(|o| o.len()),
        Some(2),
        "exactly error and message: {body}"
    );
}

async fn login_refresh_into_another_video_manager_and_list(backend: Backend) {
    let w = seeded(backend).build().await;
    let app = &w.app;
    let (status, pair) = login(app, "alice", "alice-pw").await;
    assert_eq!(status, StatusCode::OK, "{pair}");
    let fields: Vec<&str> = pair
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        [
            "accessToken",
            "refreshToken",
            "validForVideoManager",
            "videoManagerList"
        ]
    );
    let both = json!([{"id": "acme", "name": "Acme Video"}, {"id": "beta", "name": "Beta Live"}]);
    assert_eq!(pair["videoManagerList"], both);
    assert_eq!(
        pair["validForVideoManager"], "acme",
        "the default VideoManager"
    );
    let access = pair["accessToken"].as_str().expect("access token");
    assert_eq!(claims(access)["tenant"], "acme");
    assert_eq!(claims(access)["client_id"], keyframe::vms::CLIENT_ID);
    // RFC 9068 §2.2.3: no scopes were granted, so the token has no `scope` claim at all.
    assert!(claims(access).get("scope").is_none(), "{}", claims(access));
    assert!(pair["refreshToken"]
        .as_str()
        .expect("refresh token")
        .starts_with("kf_rt_"));

    let (status, listed) = list(app, access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed,
        json!({ "videoManagerList": both, "validForVideoManager": "acme" })
    );

    // Switching VideoManager rotates the refresh token.
    let first_refresh = pair["refreshToken"].as_str().expect("token").to_owned();
    let (status, switched) = refresh(app, "beta", &first_refresh).await;
    assert_eq!(status, StatusCode::OK, "{switched}");
    assert_eq!(switched["validForVideoManager"], "beta");
    assert_eq!(switched["videoManagerList"], both);
    let beta_access = switched["accessToken"]
        .as_str()
        .expect("access token")
        .to_owned();
    assert_eq!(claims(&beta_access)["tenant"], "beta");
    assert_ne!(switched["refreshToken"], pair["refreshToken"]);
    let (status, listed) = list(app, &beta_access).await;
    assert_eq!(
        (status, listed["validForVideoManager"].clone()),
        (StatusCode::OK, json!("beta"))
    );

    // The same JWT works on the OAuth side: introspection by a confidential client.
    let client = app
        .create_client(ClientSpec::confidential("RS").grants(&["refresh_token"]))
        .await;
    let introspected = app.introspect(&client, &beta_access).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["tenant"], "beta");
    assert_eq!(introspected["username"], "alice");

    // And back, with the rotated token.
    let (status, back) = refresh(
        app,
        "acme",
        switched["refreshToken"].as_str().expect("token"),
    )
    .await;
    assert_eq!(
        (status, back["validForVideoManager"].clone()),
        (StatusCode::OK, json!("acme"))
    );

    // The first refresh token was rotated out: reuse is refused and revokes the family.
    let (status, reused) = refresh(app, "acme", &first_refresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&reused, "unauthorized");
    let (status, _) = list(app, back["accessToken"].as_str().expect("token")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "reuse revoked the whole family"
    );
    let (status, _) = refresh(app, "acme", back["refreshToken"].as_str().expect("token")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn bad_input_gets_a_json_error_and_writes_nothing(backend: Backend) {
    let w = seeded(backend)
        .config(|cfg| cfg.tokens.lockout_threshold = 3)
        .build()
        .await;
    let app = &w.app;
    let (_, pair) = login(app, "alice", "alice-pw").await;
    let token = pair["refreshToken"].as_str().expect("token").to_owned();
    let families_before = app.token_families();

    // Wrong password and disabled user: 401, one message for both.
    let (status, wrong) = login(app, "alice", "nope").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&wrong, "unauthorized");
    w.cli(&["--json", "user", "disable", "bob"]).await;
    let (status, disabled) = login(app, "bob", "bob-pw").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        disabled, wrong,
        "a disabled user gets the same answer as a wrong password"
    );
    let (_, unknown) = login(app, "nobody", "x").await;
    assert_eq!(unknown, wrong);

    // A VideoManager the user does not belong to (or that does not exist): 403, nothing changes.
    for foreign in ["gamma", "no-such-vm", "Not_A_Slug"] {
        let (status, body) = refresh(app, foreign, &token).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{foreign}: {body}");
        assert_error(&body, "forbidden");
    }
    let (status, unknown) = refresh(app, "acme", "kf_rt_not-a-real-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&unknown, "unauthorized");

    // Malformed requests.
    let cases: &[(Option<&str>, &str, StatusCode, &str)] = &[
        (
            None,
            r#"{"username":"alice","password":"alice-pw"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type",
        ),
        (
            Some("text/plain"),
            r#"{"username":"alice","password":"alice-pw"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type",
        ),
        (
            Some("application/json"),
            "",
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            Some("application/json"),
            "{\"username\": \"alice\",",
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            Some("application/json"),
            "{'username':'alice','password':'alice-pw'}",
            StatusCode::BAD_REQUEST,
            "double quotes",
        ),
        (
            Some("application/json"),
            r#"{"username":"alice"}"#,
            StatusCode::BAD_REQUEST,
            "password",
        ),
        (
            Some("application/json"),
            r#"["alice","alice-pw"]"#,
            StatusCode::BAD_REQUEST,
            "JSON object",
        ),
        (
            Some("application/json"),
            r#"{"username":"alice","password":42}"#,
            StatusCode::BAD_REQUEST,
            "expected JSON object",
        ),
    ];
    for (content_type, body, expected, mentions) in cases {
        let mut request = app
            .request(Method::POST, "/v1/vms/auth/login")
            .body(body.to_string());
        if let Some(ct) = content_type {
            request = request.header("Content-Type", *ct);
        }
        let (status, error) = json_of(Answer::send(request).await);
        assert_eq!(status, *expected, "{body}");
        assert!(
            error["message"]
                .as_str()
                .expect("message")
                .contains(mentions),
            "{body}: {error}"
        );
    }

    // Nothing above wrote a family, and the refresh token still works.
    assert_eq!(app.token_families(), families_before);
    let (status, body) = refresh(app, "beta", &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Locked after three failures: 429 with Retry-After, even with the right password.
    for _ in 0..2 {
        login(app, "alice", "nope").await;
    }
    let locked = post_json(
        app,
        "/v1/vms/auth/login",
        r#"{"username":"alice","password":"alice-pw"}"#,
    )
    .await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert_error(&locked.body, "too_many_requests");
    // The lock lifts when the first failure, a moment ago, leaves the 900-second window.
    let retry_after: i64 = locked
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert_eq!(
        retry_after, 900,
        "the server's clock stood still since the first failure"
    );

    // No or a bad bearer token.
    let (status, body) = json_of(app.get("/v1/vms").await);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
    let (status, body) = list(app, "not-a-jwt").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error(&body, "unauthorized");
}

async fn the_api_can_be_turned_off(backend: Backend) {
    let w = seeded(backend)
        .config(|cfg| cfg.vms_api = false)
        .build()
        .await;
    let app = &w.app;
    let (status, _) = login(app, "alice", "alice-pw").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = refresh(app, "acme", "kf_rt_x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = list(app, "x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

backend_tests!(
    login_refresh_into_another_video_manager_and_list,
    bad_input_gets_a_json_error_and_writes_nothing,
    the_api_can_be_turned_off,
);
