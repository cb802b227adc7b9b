//! Introspection (RFC 7662), revocation (RFC 7009), the JWKS and key rotation, metadata,
//! purge, and what leaving a tenant or being disabled does to tokens, on both backends.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::{verify_with, Auth, Backend, ClientSpec, World};

/// `aud` as introspection may state it (RFC 7662 §2.2: a string or an array of strings).
fn audience_of(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .map(|v| v.as_str().expect("aud strings").to_owned())
            .collect(),
        other => panic!("aud is neither a string nor a list: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Introspection.

async fn introspection_describes_active_access_tokens(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let pair = w.sign_in(&[("tenant", "beta"), ("scope", "read")]).await;
    let jwt = pair.access_token();
    let claims = w.verify(&jwt).await;

    let answer = w
        .app
        .post_form("/oauth/introspect", w.client().auth(), &[("token", &jwt)])
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let active = answer.body;
    for (field, value) in [
        ("active", json!(true)),
        ("token_type", json!("Bearer")),
        ("scope", json!("read")),
        ("client_id", json!(w.client().id)),
        ("sub", json!(w.user_id("alice"))),
        ("username", json!("alice")),
        ("tenant", json!("beta")),
        ("iss", json!(w.app.issuer)),
    ] {
        assert_eq!(active[field], value, "{field}: {active}");
    }
    assert_eq!(audience_of(&active["aud"]), vec![w.app.issuer.as_str()]);
    for field in ["exp", "iat", "jti"] {
        assert_eq!(
            active[field], claims[field],
            "{field} as in the JWT: {active}"
        );
    }

    // client_secret_post works too, and so does a token_type_hint, right or wrong.
    for (auth, hint) in [
        (w.client().post(), None),
        (w.client().auth(), Some("access_token")),
        (w.client().auth(), Some("refresh_token")),
    ] {
        let mut fields = vec![("token", jwt.as_str())];
        if let Some(hint) = hint {
            fields.push(("token_type_hint", hint));
        }
        let answer = w.app.post_form("/oauth/introspect", auth, &fields).await;
        assert_eq!(
            answer.body["active"], true,
            "{auth:?} {hint:?}: {}",
            answer.text
        );
        assert_eq!(answer.body["jti"], claims["jti"]);
    }

    // Any confidential client may introspect access tokens.
    let resource_server = w
        .app
        .create_client(ClientSpec::confidential("Resource server").grants(&["refresh_token"]))
        .await;
    let seen = w.app.introspect(&resource_server, &jwt).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["sub"], w.user_id("alice"));
}

async fn refresh_tokens_are_introspected_by_their_client_only(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let pair = w.sign_in(&[("scope", "write")]).await;
    let token = pair.refresh_token();
    let answer = w.introspect(&token).await;
    for (field, value) in [
        ("active", json!(true)),
        ("token_type", json!("refresh_token")),
        ("scope", json!("write")),
        ("client_id", json!(w.client().id)),
        ("sub", json!(w.user_id("alice"))),
        ("username", json!("alice")),
        ("tenant", json!("acme")),
        ("iss", json!(w.app.issuer)),
    ] {
        assert_eq!(answer[field], value, "{field}: {answer}");
    }
    let now = keyframe::clock::now();
    assert!(
        answer["exp"].as_i64().is_some_and(|exp| exp > now),
        "{answer}"
    );
    assert!(
        answer["iat"].as_i64().is_some_and(|iat| iat <= now + 60),
        "{answer}"
    );
    let hinted = w
        .app
        .post_form(
            "/oauth/introspect",
            w.client().auth(),
            &[("token", &token), ("token_type_hint", "access_token")],
        )
        .await;
    assert_eq!(hinted.body["active"], true, "a wrong hint: {}", hinted.text);

    // Another confidential client: exactly inactive, for the refresh token only.
    let other = w
        .app
        .create_client(
            ClientSpec::confidential("Other")
                .grants(&["password", "refresh_token"])
                .scopes(&["read", "write"]),
        )
        .await;
    assert_eq!(
        w.app.introspect(&other, &token).await,
        json!({"active": false})
    );
    assert_eq!(
        w.app.introspect(&other, &pair.access_token()).await["active"],
        true
    );
    // Asking did not change anything.
    w.refresh(&token, &[]).await.ok();
}

async fn dead_or_malformed_tokens_are_exactly_inactive(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let pair = w.sign_in(&[]).await;
    let jwt = pair.access_token();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("header")).expect("json");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("claims")).expect("json");
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());

    // The claims changed under the original signature.
    claims["tenant"] = json!("gamma");
    let tampered = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    claims["tenant"] = json!("acme");
    // Unsigned (`alg: none`), with the real kid.
    let mut none = header.clone();
    none["alg"] = json!("none");
    let unsigned = format!("{}.{}.", b64(&none), b64(&claims));
    // Signed by another P-256 key under the real kid, and with HS256 and a guessable secret.
    let kid = header["kid"].as_str().expect("kid").to_owned();
    let mut es256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    es256.typ = Some("at+jwt".into());
    es256.kid = Some(kid.clone());
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .expect("key");
    let forged = jsonwebtoken::encode(
        &es256,
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
    )
    .expect("sign");
    let mut hs256 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs256.typ = Some("at+jwt".into());
    hs256.kid = Some(kid);
    let symmetric = jsonwebtoken::encode(
        &hs256,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"secret"),
    )
    .expect("sign");
    assert!(
        verify_with(&w.app.jwks().await, &forged, &w.app.issuer, &w.app.issuer).is_err(),
        "the forgery must not verify"
    );

    let rt = pair.refresh_token();
    let dead: Vec<(&str, String)> = vec![
        ("unknown refresh token", "kf_rt_unknown".into()),
        ("garbage", "not a token at all".into()),
        ("a JWT's header only", parts[0].to_owned()),
        ("a truncated JWT", jwt[..jwt.len() - 3].to_owned()),
        ("an extended JWT", format!("{jwt}x")),
        ("a tampered JWT", tampered),
        ("an unsigned JWT", unsigned),
        ("a JWT signed by another key", forged),
        ("an HS256 JWT", symmetric),
        ("a refresh token with a changed character", {
            let last = rt.chars().last().expect("char");
            format!(
                "{}{}",
                &rt[..rt.len() - 1],
                if last == 'A' { 'B' } else { 'A' }
            )
        }),
    ];
    for (what, token) in &dead {
        assert_eq!(
            w.introspect(token).await,
            json!({"active": false}),
            "{what}: {token}"
        );
    }

    // A rotated-out refresh token; a revoked access token.
    let next = w.refresh(&rt, &[]).await.ok();
    assert_eq!(w.introspect(&rt).await, json!({"active": false}), "rotated");
    assert!(w.active(&next.refresh_token()).await);
    let other = w.sign_in(&[]).await;
    w.app.revoke(w.client(), &other.access_token()).await;
    assert_eq!(
        w.introspect(&other.access_token()).await,
        json!({"active": false}),
        "revoked"
    );
}

async fn expired_tokens_are_exactly_inactive(backend: Backend) {
    let w = World::token_service(backend)
        .config(|cfg| {
            cfg.tokens.access_token_ttl = 60;
            cfg.tokens.refresh_token_idle_ttl = 120;
        })
        .build()
        .await;
    let pair = w.sign_in(&[]).await;
    w.app.clock.advance(59);
    assert!(w.active(&pair.access_token()).await);
    assert!(w.active(&pair.refresh_token()).await);
    w.app.clock.advance(61);
    assert_eq!(
        w.introspect(&pair.access_token()).await,
        json!({"active": false}),
        "expired access token"
    );
    assert_eq!(
        w.introspect(&pair.refresh_token()).await,
        json!({"active": false}),
        "expired refresh token"
    );
}

async fn introspection_requires_a_confidential_client(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let jwt = w.sign_in(&[]).await.access_token();
    let public = w
        .app
        .create_client(ClientSpec::public("SPA").grants(&["password", "refresh_token"]))
        .await;
    for (what, auth) in [
        ("no client authentication", Auth::Nothing),
        ("a wrong secret", Auth::Basic(&w.client().id, "kf_cs_wrong")),
        ("an unknown client", Auth::Post("kf-unknown", "kf_cs_wrong")),
        (
            "a confidential client without its secret",
            Auth::Id(&w.client().id),
        ),
        ("a public client", Auth::Id(&public.id)),
    ] {
        let answer = w
            .app
            .post_form("/oauth/introspect", auth, &[("token", &jwt)])
            .await;
        answer.assert_invalid_client(what);
    }
    // An authenticated request without a token is malformed.
    w.app
        .post_form("/oauth/introspect", w.client().auth(), &[])
        .await
        .assert_400("invalid_request");
}

/// Many introspections at once, over connections that share caches and a pool: each gets the
/// answer for its own token, and a removed membership is seen by every one that follows it.
async fn concurrent_introspections_each_get_their_own_answer(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let first = w.sign_in(&[]).await;
    let second = w.refresh(&first.refresh_token(), &[]).await.ok();
    let beta = w.sign_in(&[("tenant", "beta")]).await;
    let revoked_jwt = w.sign_in(&[]).await;
    let revoked_family = w.sign_in(&[]).await;
    let answer = w.app.revoke(w.client(), &revoked_jwt.access_token()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let answer = w
        .app
        .revoke(w.client(), &revoked_family.refresh_token())
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);

    // (token, (tenant, jti) when active)
    let mut expected = Vec::new();
    for (pair, tenant) in [
        (&first, Some("acme")),
        (&second, Some("acme")),
        (&beta, Some("beta")),
        (&revoked_jwt, None),
        (&revoked_family, None),
    ] {
        let token = pair.access_token();
        let claims = w.verify(&token).await;
        expected.push((token, tenant.map(|t| (t, claims["jti"].clone()))));
    }
    let check_all = |expected: Vec<(String, Option<(&'static str, Value)>)>| {
        let w = &w;
        async move {
            let rounds = (0..60).map(|i| {
                let (token, active) = &expected[i % expected.len()];
                async move { (active, w.introspect(token).await) }
            });
            for (active, answer) in futures_util::future::join_all(rounds).await {
                match active {
                    Some((tenant, jti)) => {
                        assert_eq!(answer["active"], true, "{answer}");
                        assert_eq!(&answer["jti"], jti, "its own token: {answer}");
                        assert_eq!(answer["tenant"], *tenant, "{answer}");
                        assert_eq!(answer["username"], "alice", "{answer}");
                    }
                    None => assert_eq!(answer, json!({"active": false})),
                }
            }
        }
    };
    check_all(expected.clone()).await;

    w.cli(&["--json", "user", "remove-tenant", "alice", "beta"])
        .await;
    expected[2].1 = None;
    check_all(expected).await;
}

// ---------------------------------------------------------------------------------------------
// Revocation.

/// Revokes `token` with this `token_type_hint`, right or wrong: 200 either way.
async fn revoke_with_hint(w: &World, auth: Auth<'_>, token: &str, hint: &str) {
    let fields = [("token", token), ("token_type_hint", hint)];
    let answer = w.app.post_form("/oauth/revoke", auth, &fields).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

async fn revoking_a_refresh_token_ends_its_family(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let first = w.sign_in(&[]).await;
    let second = w.refresh(&first.refresh_token(), &[]).await.ok();
    let bystander = w.sign_in(&[]).await;
    revoke_with_hint(
        &w,
        w.client().auth(),
        &second.refresh_token(),
        "refresh_token",
    )
    .await;
    w.refresh(&second.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
    for token in [
        first.access_token(),
        second.access_token(),
        second.refresh_token(),
    ] {
        assert!(!w.active(&token).await, "the whole family is revoked");
    }
    assert!(w.active(&bystander.access_token()).await, "another family");
    w.refresh(&bystander.refresh_token(), &[]).await.ok();

    // With a wrong hint, the token is still found.
    let pair = w.sign_in(&[]).await;
    revoke_with_hint(&w, w.client().post(), &pair.refresh_token(), "access_token").await;
    w.refresh(&pair.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
    assert!(!w.active(&pair.access_token()).await);
}

async fn revoking_an_access_token_makes_it_inactive(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let pair = w.sign_in(&[]).await;
    let sibling = w.sign_in(&[]).await;
    assert!(w.active(&pair.access_token()).await);
    let answer = w.app.revoke(w.client(), &pair.access_token()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(
        w.introspect(&pair.access_token()).await,
        json!({"active": false})
    );
    assert!(w.active(&sibling.access_token()).await, "only that token");

    // With a wrong hint, the token is still found.
    revoke_with_hint(
        &w,
        w.client().auth(),
        &sibling.access_token(),
        "refresh_token",
    )
    .await;
    assert!(!w.active(&sibling.access_token()).await);
}

async fn revoking_unknown_or_foreign_tokens_answers_200_and_changes_nothing(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let pair = w.sign_in(&[]).await;
    for token in ["kf_rt_unknown", "garbage", "eyJhbGciOiJub25lIn0.e30."] {
        let answer = w.app.revoke(w.client(), token).await;
        assert_eq!(answer.status, StatusCode::OK, "{token}: {}", answer.text);
    }
    let other = w
        .app
        .create_client(
            ClientSpec::confidential("Other")
                .grants(&["password", "refresh_token"])
                .scopes(&["read"]),
        )
        .await;
    for token in [pair.refresh_token(), pair.access_token()] {
        let answer = w.app.revoke(&other, &token).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    let public = w
        .app
        .create_client(ClientSpec::public("SPA").grants(&["password", "refresh_token"]))
        .await;
    let answer = w.app.revoke(&public, &pair.refresh_token()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);

    assert!(w.active(&pair.access_token()).await, "untouched");
    assert!(w.active(&pair.refresh_token()).await, "untouched");
    w.refresh(&pair.refresh_token(), &[]).await.ok();
}

async fn revocation_authenticates_clients_like_the_token_endpoint(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let pair = w.sign_in(&[]).await;
    for (what, auth) in [
        ("no client authentication", Auth::Nothing),
        ("a wrong secret", Auth::Basic(&w.client().id, "kf_cs_wrong")),
        (
            "a confidential client without its secret",
            Auth::Id(&w.client().id),
        ),
        ("an unknown client", Auth::Id("kf-unknown")),
    ] {
        let answer = w
            .app
            .post_form("/oauth/revoke", auth, &[("token", &pair.refresh_token())])
            .await;
        answer.assert_invalid_client(what);
    }
    w.app
        .post_form("/oauth/revoke", w.client().auth(), &[])
        .await
        .assert_400("invalid_request");
    assert!(w.active(&pair.refresh_token()).await, "nothing was revoked");

    // A public client revokes its own tokens with its client_id alone.
    let public = w
        .app
        .create_client(ClientSpec::public("SPA").grants(&["password", "refresh_token"]))
        .await;
    let theirs = w.sign_in_at(&public, &[]).await;
    let answer = w.app.revoke(&public, &theirs.refresh_token()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    w.app
        .refresh(&public, &theirs.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
    assert!(!w.active(&theirs.access_token()).await);
}

// ---------------------------------------------------------------------------------------------
// JWKS, key rotation and metadata.

async fn jwks_publishes_public_p256_keys_only(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let pair = w.sign_in(&[]).await;
    let jwks = w.app.jwks().await;
    let keys = jwks["keys"].as_array().expect("keys");
    assert!(!keys.is_empty());
    for key in keys {
        let mut members: Vec<&str> = key
            .as_object()
            .expect("a JWK object")
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        for required in ["alg", "crv", "kid", "kty", "use", "x", "y"] {
            assert!(members.contains(&required), "{required}: {key}");
        }
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(!members.contains(&private), "private part {private}: {key}");
        }
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(key["alg"], "ES256");
        assert_eq!(key["use"], "sig");
        for coordinate in ["x", "y"] {
            let bytes = URL_SAFE_NO_PAD
                .decode(key[coordinate].as_str().expect("coordinate"))
                .expect("base64url");
            assert_eq!(bytes.len(), 32, "{coordinate} is a P-256 coordinate");
        }
    }
    let kid = jsonwebtoken::decode_header(pair.access_token())
        .expect("header")
        .kid
        .expect("kid");
    assert!(keys.iter().any(|k| k["kid"] == kid.as_str()));
    assert_eq!(
        verify_with(&jwks, &pair.access_token(), &w.app.issuer, &w.app.issuer).expect("verifies")
            ["sub"],
        w.user_id("alice")
    );
    assert!(
        !jwks.to_string().contains("PRIVATE"),
        "no PEM in the JWKS either"
    );
}

async fn key_rotation_keeps_old_tokens_valid(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let before = w.sign_in(&[]).await;
    let old_kid = jsonwebtoken::decode_header(before.access_token())
        .expect("header")
        .kid
        .expect("kid");

    let rotated = w.cli(&["--json", "key", "rotate"]).await;
    let new_kid = rotated["kid"].as_str().expect("kid").to_owned();
    assert_ne!(new_kid, old_kid);

    // Instances recheck the current key every second of real time (the server's own cache
    // timer, under test): wait that out, then every new token carries the new kid.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = w.sign_in(&[]).await;
    assert_eq!(
        jsonwebtoken::decode_header(after.access_token())
            .expect("header")
            .kid
            .as_deref(),
        Some(new_kid.as_str()),
        "new tokens are signed with the new key"
    );
    let refreshed = w.refresh(&before.refresh_token(), &[]).await.ok();
    assert_eq!(
        jsonwebtoken::decode_header(refreshed.access_token())
            .expect("header")
            .kid
            .as_deref(),
        Some(new_kid.as_str())
    );

    // Both keys are published: old and new tokens verify offline and introspect active.
    let jwks = w.app.jwks().await;
    for kid in [&old_kid, &new_kid] {
        assert!(
            jwks["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .any(|k| k["kid"] == kid.as_str()),
            "{kid} in {jwks}"
        );
    }
    for jwt in [before.access_token(), after.access_token()] {
        verify_with(&jwks, &jwt, &w.app.issuer, &w.app.issuer).expect("verifies");
        assert!(w.active(&jwt).await);
    }

    let listed = w.cli(&["--json", "key", "list"]).await;
    let keys = listed["keys"].as_array().expect("keys");
    let find = |kid: &str| {
        keys.iter()
            .find(|k| k["kid"] == kid)
            .unwrap_or_else(|| panic!("{kid} not in {listed}"))
    };
    assert_eq!(find(&new_kid)["current"], true);
    assert_eq!(find(&old_kid)["current"], false);
    assert_eq!(
        keys.iter().filter(|k| k["current"] == true).count(),
        1,
        "{listed}"
    );
    for key in keys {
        assert!(
            key["created_at"].is_number() || key["created_at"].is_string(),
            "{key}"
        );
        assert!(
            key.get("d").is_none() && key.get("private_key").is_none(),
            "{key}"
        );
    }
}

/// Every string value anywhere in a JSON document.
fn string_values(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(list) => list.iter().for_each(|v| string_values(v, out)),
        Value::Object(map) => map.values().for_each(|v| string_values(v, out)),
        _ => {}
    }
}

async fn metadata_lists_the_endpoints(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let meta = w
        .app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(meta["issuer"], w.app.issuer.as_str());
    for (field, path) in [
        ("token_endpoint", "/oauth/token"),
        ("jwks_uri", "/oauth/jwks"),
        ("introspection_endpoint", "/oauth/introspect"),
        ("revocation_endpoint", "/oauth/revoke"),
    ] {
        assert_eq!(meta[field], format!("{}{path}", w.app.issuer), "{field}");
    }
    let list = |field: &str| -> Vec<String> {
        meta[field]
            .as_array()
            .unwrap_or_else(|| panic!("{field} is not a list: {meta}"))
            .iter()
            .map(|v| v.as_str().expect("strings").to_owned())
            .collect()
    };
    let grants = list("grant_types_supported");
    for grant in ["password", "refresh_token"] {
        assert!(grants.iter().any(|g| g == grant), "{grant}: {grants:?}");
    }
    let methods = list("token_endpoint_auth_methods_supported");
    for method in ["client_secret_basic", "client_secret_post", "none"] {
        assert!(methods.iter().any(|m| m == method), "{method}: {methods:?}");
    }
    for field in [
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        assert!(
            list(field).iter().any(|m| m == "client_secret_basic"),
            "{field}: {meta}"
        );
    }
    list("scopes_supported");
    let mut values = Vec::new();
    string_values(&meta, &mut values);
    assert!(values.iter().any(|v| v == "ES256"), "ES256 listed: {meta}");

    // The advertised endpoints are the ones that work.
    let token_endpoint = meta["token_endpoint"].as_str().expect("url");
    assert!(token_endpoint.starts_with(&w.app.issuer));
    let pair = w.sign_in(&[]).await;
    let jwks: Value = w
        .app
        .http
        .get(format!(
            "{}{}",
            w.app.address,
            meta["jwks_uri"]
                .as_str()
                .expect("url")
                .trim_start_matches(&w.app.issuer)
        ))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    verify_with(&jwks, &pair.access_token(), &w.app.issuer, &w.app.issuer).expect("verifies");
}

// ---------------------------------------------------------------------------------------------
// Purge.

async fn purge_removes_dead_rows_and_keeps_what_matters(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let live = w.sign_in(&[]).await;
    let live = w.refresh(&live.refresh_token(), &[]).await.ok();
    let revoked = w.sign_in(&[]).await;
    assert_eq!(
        w.app
            .revoke(w.client(), &revoked.refresh_token())
            .await
            .status,
        StatusCode::OK
    );
    let reused = w.sign_in(&[]).await;
    let reused_next = w.refresh(&reused.refresh_token(), &[]).await.ok();
    w.refresh(&reused.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
    let revoked_access = w.sign_in(&[]).await;
    w.app
        .revoke(w.client(), &revoked_access.access_token())
        .await;

    let before = w.app.token_rows();
    let purged = w.app.cli(&["--json", "purge"], None).await.json();
    assert!(purged.is_object(), "{purged}");
    let after = w.app.token_rows();
    assert!(
        after < before,
        "revoked rows were deleted: {before} -> {after}"
    );

    // What is valid still works.
    assert!(w.active(&live.access_token()).await);
    assert!(w.active(&live.refresh_token()).await);
    let next = w.refresh(&live.refresh_token(), &[]).await.ok();
    assert!(w.active(&next.access_token()).await);
    // What was dead stays dead.
    w.refresh(&revoked.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
    w.refresh(&reused_next.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
    for token in [
        revoked.access_token(),
        reused_next.access_token(),
        revoked_access.access_token(),
    ] {
        assert_eq!(w.introspect(&token).await, json!({"active": false}));
    }
}

// ---------------------------------------------------------------------------------------------
// Memberships and disabled users.

async fn leaving_a_tenant_ends_its_tokens(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let beta = w.sign_in(&[("tenant", "beta")]).await;
    let acme = w.sign_in(&[]).await;
    assert!(w.active(&beta.access_token()).await);

    w.cli(&["--json", "user", "remove-tenant", "alice", "beta"])
        .await;
    w.refresh(&beta.refresh_token(), &[])
        .await
        .assert_400("invalid_grant");
    assert_eq!(
        w.introspect(&beta.access_token()).await,
        json!({"active": false})
    );
    assert_eq!(
        w.introspect(&beta.refresh_token()).await,
        json!({"active": false})
    );
    let refused = w.password(&[("tenant", "beta")]).await;
    refused.assert_400("invalid_request");
    assert!(refused.description().contains("beta"), "{}", refused.text);
    // Switching into it by refresh is refused too, and changes nothing.
    w.refresh(&acme.refresh_token(), &[("tenant", "beta")])
        .await
        .assert_400("invalid_request");
    // The tenant alice still belongs to is unaffected.
    let next = w.refresh(&acme.refresh_token(), &[]).await.ok();
    assert_eq!(next.body["tenant"], "acme");
    assert_eq!(
        next.body["tenants"],
        json!([{"id": "acme", "name": "Acme Video"}])
    );
}

async fn disabling_a_user_ends_all_their_tokens(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let acme = w.sign_in(&[]).await;
    let beta = w.sign_in(&[("tenant", "beta")]).await;
    w.cli(&["--json", "user", "disable", "alice"]).await;
    for pair in [&acme, &beta] {
        w.refresh(&pair.refresh_token(), &[])
            .await
            .assert_400("invalid_grant");
        for token in [pair.access_token(), pair.refresh_token()] {
            assert_eq!(w.introspect(&token).await, json!({"active": false}));
        }
    }
    w.password(&[]).await.assert_400("invalid_grant");
}

backend_tests!(
    introspection_describes_active_access_tokens,
    refresh_tokens_are_introspected_by_their_client_only,
    dead_or_malformed_tokens_are_exactly_inactive,
    expired_tokens_are_exactly_inactive,
    introspection_requires_a_confidential_client,
    concurrent_introspections_each_get_their_own_answer,
    revoking_a_refresh_token_ends_its_family,
    revoking_an_access_token_makes_it_inactive,
    revoking_unknown_or_foreign_tokens_answers_200_and_changes_nothing,
    revocation_authenticates_clients_like_the_token_endpoint,
    jwks_publishes_public_p256_keys_only,
    key_rotation_keeps_old_tokens_valid,
    metadata_lists_the_endpoints,
    purge_removes_dead_rows_and_keeps_what_matters,
    leaving_a_tenant_ends_its_tokens,
    disabling_a_user_ends_all_their_tokens,
);
