//! The error answers whose shape an RFC fixes, snapshotted whole (status, the headers the RFC
//! asks for, the JSON body) with `insta`: a change to any of them fails the test until the new
//! snapshot is reviewed (`cargo insta review`) and committed. Both backends must give the same
//! answer, so both variants check the same snapshot.

use insta::assert_json_snapshot;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::helpers::{secret, Answer, Backend, ClientSpec, TestClient, World, ACCESS_TOKEN_TYPE};

/// olivia's password grant at `client`.
async fn olivia(w: &World, client: &TestClient, password: &str, extra: &[(&str, &str)]) -> Answer {
    w.app
        .password_grant(client, "olivia", password, extra)
        .await
}

async fn error_bodies_match_their_snapshots(backend: Backend) {
    let w = World::api_tokens(backend)
        .client(
            ClientSpec::public("Player")
                .grants(&["password"])
                .scopes(&["video:read"]),
        )
        .build()
        .await;
    let (backend_client, player) = (w.client(), &w.clients[1]);
    let issuer = &w.app.issuer;

    // RFC 6749 §5.2, at the token endpoint.
    let scope = ("scope", "keyframe:tokens");
    let repeated = olivia(&w, backend_client, "olivia-pw", &[scope, scope]).await;
    repeated.assert_400("invalid_request");
    assert_json_snapshot!("token_repeated_parameter", repeated.error_view(issuer));

    let wrong_secret = TestClient {
        secret: Some("kf_cs_wrong".into()),
        ..backend_client.clone()
    };
    let wrong_secret = olivia(&w, &wrong_secret, "olivia-pw", &[]).await;
    wrong_secret.assert_invalid_client("a wrong secret");
    assert_json_snapshot!("token_invalid_client", wrong_secret.error_view(issuer));

    let wrong_password = olivia(&w, backend_client, "wrong", &[]).await;
    wrong_password.assert_400("invalid_grant");
    assert_json_snapshot!("token_invalid_grant", wrong_password.error_view(issuer));

    let implicit = w
        .app
        .post_form(
            "/oauth/token",
            backend_client.auth(),
            &[("grant_type", "implicit")],
        )
        .await;
    implicit.assert_400("unsupported_grant_type");
    assert_json_snapshot!("token_unsupported_grant_type", implicit.error_view(issuer));

    let admin = olivia(&w, backend_client, "olivia-pw", &[("scope", "admin")]).await;
    admin.assert_400("invalid_scope");
    assert_json_snapshot!("token_invalid_scope", admin.error_view(issuer));

    // RFC 8693 §2.2.2: an audience Keyframe does not issue for.
    let owner = w.access_token("olivia", "acme").await;
    let api_token = w.personal_token(&owner, "Laptop").await;
    let elsewhere = w
        .exchange_with(
            &secret(&api_token),
            ACCESS_TOKEN_TYPE,
            &[("audience", "https://elsewhere.example")],
        )
        .await;
    elsewhere.assert_400("invalid_target");
    assert_json_snapshot!(
        "token_exchange_invalid_target",
        elsewhere.error_view(issuer)
    );

    // RFC 7009 §2.2.1: API tokens are not revoked at /oauth/revoke.
    let revoke = w.app.revoke(backend_client, &secret(&api_token)).await;
    revoke.assert_400("unsupported_token_type");
    assert_json_snapshot!("revoke_unsupported_token_type", revoke.error_view(issuer));

    // RFC 7662 §2.2: an inactive token is `{"active": false}` and nothing else.
    let inactive = w
        .app
        .post_form(
            "/oauth/introspect",
            backend_client.auth(),
            &[("token", "garbage")],
        )
        .await;
    assert_eq!(inactive.status, StatusCode::OK, "{}", inactive.text);
    assert_json_snapshot!("introspect_inactive", inactive.error_view(issuer));

    // RFC 6750 §3.1: a token without `keyframe:tokens` may not manage API tokens.
    let player_token = olivia(&w, player, "olivia-pw", &[("tenant", "acme")])
        .await
        .access_token();
    let refused = w
        .app
        .bearer(
            Method::POST,
            "/api/v1/tenants/acme/tokens",
            &player_token,
            Some(json!({"name": "Minted", "kind": "personal"})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert_json_snapshot!("api_tokens_insufficient_scope", refused.error_view(issuer));

    // RFC 9110 §15.5.6: 405 names the methods the path takes.
    let get = w.app.get("/oauth/token").await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED, "{}", get.text);
    assert_json_snapshot!("method_not_allowed", get.error_view(issuer));
}

backend_tests!(error_bodies_match_their_snapshots);
