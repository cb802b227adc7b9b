//! What every answer owes a client whatever the endpoint: 405 with `Allow` for a method the
//! path does not take, `nosniff`, HEAD beside GET; and registration refusing redirect URIs
//! that would send codes in the clear.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{Backend, ClientSpec, TestApp};

async fn send(app: &TestApp, method: Method, path: &str) -> reqwest::Response {
    app.http
        .request(method, format!("{}{path}", app.address))
        .send()
        .await
        .expect("request")
}

async fn wrong_methods_get_405_with_allow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (method, path, allow) in [
        (Method::GET, "/oauth/token", "POST"),
        (Method::PUT, "/oauth/introspect", "POST"),
        (Method::GET, "/oauth/revoke", "POST"),
        (Method::POST, "/oauth/jwks", "GET, HEAD"),
        (Method::DELETE, "/login", "GET, HEAD, POST"),
        (Method::GET, "/tokens/create", "POST"),
        (
            Method::PUT,
            "/api/v1/tenants/acme/tokens",
            "GET, HEAD, POST",
        ),
        (Method::GET, "/api/v1/tenants/acme/tokens/abc/renew", "POST"),
        (Method::GET, "/api/v1/tenants/acme/tokens/abc", "DELETE"),
        (Method::GET, "/v1/vms/auth/login", "POST"),
        (Method::PATCH, "/healthz", "GET, HEAD"),
    ] {
        let response = send(&app, method.clone(), path).await;
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let body: Value = response.json().await.expect("a JSON error");
        assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
    }
    // A path that does not exist is still 404 for any method.
    let response = send(&app, Method::DELETE, "/no/such/path").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

async fn head_answers_like_get_without_a_body(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for path in ["/healthz", "/.well-known/oauth-authorization-server"] {
        let get = send(&app, Method::GET, path).await;
        let head = send(&app, Method::HEAD, path).await;
        assert_eq!(head.status(), get.status(), "{path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "{path}"
        );
        assert!(head.bytes().await.expect("body").is_empty(), "{path}");
    }
}

async fn json_answers_are_not_sniffed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token_error = app
        .http
        .post(format!("{}/oauth/token", app.address))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .expect("request");
    let metadata = send(&app, Method::GET, "/.well-known/oauth-authorization-server").await;
    let api_error = send(&app, Method::GET, "/api/v1/tenants/acme/tokens").await;
    let not_found = send(&app, Method::GET, "/nowhere").await;
    for response in [token_error, metadata, api_error, not_found] {
        let what = format!("{} {}", response.url().path(), response.status());
        assert!(
            response.headers()["content-type"]
                .to_str()
                .expect("content type")
                .starts_with("application/json"),
            "{what}"
        );
        assert_eq!(
            response.headers()["x-content-type-options"],
            "nosniff",
            "{what}"
        );
    }
}

async fn plain_http_redirect_uris_only_for_loopback(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let create = |uri: &'static str| {
        let app = &app;
        async move {
            let spec = ClientSpec::confidential("App").redirect_uris(&[uri]);
            app.cli(&spec.args(), None).await
        }
    };
    for refused in [
        "http://app.example/callback",
        "http://127.0.0.2/callback",
        "http://localhost.evil.example/callback",
        "javascript:alert(1)",
    ] {
        let error = create(refused).await.refused();
        assert!(error.contains("redirect URI"), "{refused}: {error}");
    }
    for accepted in [
        "https://app.example/callback",
        "http://127.0.0.1:8123/callback",
        "http://[::1]:8123/callback",
        "http://localhost:8123/callback",
        "com.example.app:/oauth",
    ] {
        let client = create(accepted).await.json();
        assert_eq!(client["redirect_uris"][0], accepted, "{client}");
    }
    let list = app.cli(&["--json", "client", "list"], None).await.json();
    let mut registered: Vec<&str> = list["clients"]
        .as_array()
        .expect("clients")
        .iter()
        .filter(|c| c["name"] == "App")
        .filter_map(|c| c["redirect_uris"][0].as_str())
        .collect();
    registered.sort_unstable();
    assert_eq!(
        registered,
        [
            "com.example.app:/oauth",
            "http://127.0.0.1:8123/callback",
            "http://[::1]:8123/callback",
            "http://localhost:8123/callback",
            "https://app.example/callback",
        ],
        "only the accepted ones were written"
    );
}

backend_tests!(
    wrong_methods_get_405_with_allow,
    head_answers_like_get_without_a_body,
    json_answers_are_not_sniffed,
    plain_http_redirect_uris_only_for_loopback,
);
