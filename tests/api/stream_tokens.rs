//! Stream playback tokens: Flussonic's JSON-RPC `Auth.CreateApiToken` and `Auth.RevokeToken`
//! at `POST /api/` (params, protocol errors, batches, credentials and roles), the token as a
//! media server verifies it offline from the JWKS, the revocation list, and Flussonic's
//! authorization call-back.

use reqwest::header::{CONTENT_TYPE, IF_NONE_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::{claims, secret, Answer, Backend, ClientSpec, World, WorldBuilder};

/// The API tokens' world (olivia owns acme and is a member of beta, max is a member of acme, a
/// first-party client with `keyframe:tokens`) and a player client without that scope.
fn world(backend: Backend) -> WorldBuilder {
    World::api_tokens(backend).client(
        ClientSpec::public("Player")
            .grants(&["password"])
            .scopes(&["video:read"]),
    )
}

/// `POST /api/` with this JSON body (raw, so that malformed documents can be sent).
async fn post(w: &World, bearer: Option<&str>, body: &str) -> Answer {
    let mut request = w
        .app
        .request(Method::POST, "/api/")
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    Answer::send(request).await
}

/// One call with id 1.
async fn call(w: &World, bearer: Option<&str>, method: &str, params: Value) -> Answer {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1});
    post(w, bearer, &body.to_string()).await
}

async fn create(w: &World, bearer: &str, params: Value) -> Answer {
    call(w, Some(bearer), "Auth.CreateApiToken", params).await
}

/// A stream token that must be issued.
async fn issued(w: &World, bearer: &str, params: Value) -> String {
    let answer = create(w, bearer, params.clone()).await;
    assert_eq!(answer.status, StatusCode::OK, "{params}: {}", answer.text);
    assert_eq!(answer.body["jsonrpc"], "2.0");
    assert_eq!(answer.body["id"], 1);
    answer.body["result"]
        .as_str()
        .unwrap_or_else(|| panic!("the result is not a string: {}", answer.text))
        .to_owned()
}

/// A JSON-RPC error object with this HTTP status and code, and a message saying something.
#[track_caller]
fn assert_rpc_error(answer: &Answer, status: StatusCode, code: i64) -> String {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.body["jsonrpc"], "2.0", "{}", answer.text);
    assert_eq!(answer.body["error"]["code"], code, "{}", answer.text);
    assert!(answer.body.get("result").is_none(), "{}", answer.text);
    let message = answer.body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {}", answer.text));
    assert!(!message.is_empty());
    message.to_owned()
}

fn header(jwt: &str) -> Value {
    use base64::Engine;
    let head = jwt.split('.').next().expect("a JWT");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .expect("base64");
    serde_json::from_slice(&json).expect("JSON header")
}

/// What a media server does with nothing but the JWKS and a JWT library (jsonwebtoken, on the
/// system clock): `typ`, ES256, a published `kid`, the signature, `iss`, `nbf` and `exp` when
/// present.
fn verify_offline(jwks: &Value, jwt: &str, issuer: &str) -> Result<Value, String> {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let head = decode_header(jwt).map_err(|e| format!("header: {e}"))?;
    if head.typ.as_deref() != Some("stream+jwt") || head.alg != Algorithm::ES256 {
        return Err(format!("not a stream token: {head:?}"));
    }
    let kid = head.kid.ok_or("no kid")?;
    let key = jwks["keys"]
        .as_array()
        .ok_or("no keys")?
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} is not published"))?;
    let decoding = DecodingKey::from_ec_components(
        key["x"].as_str().ok_or("no x")?,
        key["y"].as_str().ok_or("no y")?,
    )
    .map_err(|e| format!("JWK: {e}"))?;
    let has_exp = claims(jwt).get("exp").is_some();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.validate_exp = has_exp;
    validation.leeway = 0;
    validation.set_required_spec_claims(if has_exp {
        &["iss", "sub", "nbf", "exp"][..]
    } else {
        &["iss", "sub", "nbf"][..]
    });
    decode::<Value>(jwt, &decoding, &validation)
        .map(|data| data.claims)
        .map_err(|e| format!("{e:?}"))
}

// ---------------------------------------------------------------------------------------------
// Creating tokens.

async fn tokens_are_signed_jwts_that_verify_offline(backend: Backend) {
    let w = world(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    let now = w.app.clock.now();
    let jwks = w.app.jwks().await;

    let live = issued(&w, &olivia, json!({"stream": "cam/1", "live": true})).await;
    assert_eq!(header(&live)["typ"], "stream+jwt");
    assert_eq!(header(&live)["alg"], "ES256");
    let c = verify_offline(&jwks, &live, &w.app.issuer).expect("verifies offline");
    assert_eq!(c["iss"], w.app.issuer.as_str());
    assert_eq!(c["sub"], "cam/1");
    assert_eq!(c["tenant"], "acme");
    assert_eq!(c["iat"], now);
    assert_eq!(c["nbf"], now);
    assert_eq!(c["exp"], now + 3600, "ttl defaults to 3600");
    assert_eq!(
        c["perm"],
        json!({"live": true, "dvr": false, "copy": false})
    );
    assert!(c.get("window").is_none(), "{c}");
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16), "{c}");

    // Each permission alone, and the window's bounds as given (0 = unbounded side).
    for (perm, window) in [
        (json!({"dvr": true}), json!({"from": 1000, "to": 2000})),
        (json!({"copy": true}), json!({"from": 1000})),
        (json!({"dvr": true, "copy": true}), json!({"to": 2000})),
        (json!({"dvr": true}), json!({"from": 1500, "to": 1500})),
    ] {
        let mut params = json!({"stream": "cam1", "ttl": 60});
        for source in [&perm, &window] {
            for (k, v) in source.as_object().expect("object") {
                params[k] = v.clone();
            }
        }
        let token = issued(&w, &olivia, params.clone()).await;
        let c = verify_offline(&jwks, &token, &w.app.issuer).expect("verifies offline");
        assert_eq!(c["exp"], now + 60);
        for action in ["live", "dvr", "copy"] {
            assert_eq!(
                c["perm"][action],
                perm.get(action).cloned().unwrap_or(json!(false)),
                "{params}"
            );
        }
        let expected = json!({
            "from": window.get("from").cloned().unwrap_or(json!(0)),
            "to": window.get("to").cloned().unwrap_or(json!(0)),
        });
        assert_eq!(c["window"], expected, "{params}");
    }

    // ttl 0: no exp at all, and still a valid token.
    let forever = issued(
        &w,
        &olivia,
        json!({"stream": "cam1", "live": true, "ttl": 0}),
    )
    .await;
    let c = verify_offline(&jwks, &forever, &w.app.issuer).expect("verifies offline");
    assert!(c.get("exp").is_none(), "{c}");

    // The alias answers the same.
    let answer = call(
        &w,
        Some(&olivia),
        "Auth.CreateAccessToken",
        json!({"stream": "cam1", "live": true}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let aliased = answer.body["result"].as_str().expect("token");
    assert_eq!(claims(aliased)["sub"], "cam1");
    assert_ne!(claims(aliased)["jti"], claims(&live)["jti"]);

    // A token whose nbf lies ahead is refused by the library; so is an expired one.
    w.app.clock.advance(3600);
    let olivia = w.access_token("olivia", "acme").await;
    let early = issued(&w, &olivia, json!({"stream": "cam1", "live": true})).await;
    let refusal = verify_offline(&jwks, &early, &w.app.issuer).expect_err("nbf ahead");
    assert!(refusal.contains("ImmatureSignature"), "{refusal}");
    w.app.clock.advance(-3 * 3600);
    let olivia = w.access_token("olivia", "acme").await;
    let late = issued(
        &w,
        &olivia,
        json!({"stream": "cam1", "live": true, "ttl": 60}),
    )
    .await;
    let refusal = verify_offline(&jwks, &late, &w.app.issuer).expect_err("expired");
    assert!(refusal.contains("ExpiredSignature"), "{refusal}");
    // Tampering with the claims breaks the signature.
    let mut parts: Vec<String> = live.split('.').map(str::to_owned).collect();
    let mut forged = claims(&live);
    forged["perm"]["dvr"] = json!(true);
    use base64::Engine;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string());
    let refusal = verify_offline(&jwks, &parts.join("."), &w.app.issuer).expect_err("forged");
    assert!(refusal.contains("InvalidSignature"), "{refusal}");
}

async fn every_param_rule_answers_invalid_params(backend: Backend) {
    let w = world(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    let rows_before = stream_rows(&w);
    for (params, naming) in [
        (json!({"live": true}), "stream is required"),
        (json!({"stream": "", "live": true}), "stream"),
        (json!({"stream": "x".repeat(256), "live": true}), "stream"),
        (json!({"stream": "a\u{7}b", "live": true}), "stream"),
        (json!({"stream": 12, "live": true}), "stream"),
        (json!({"stream": "a", "live": true, "ttl": -5}), "ttl"),
        (json!({"stream": "a", "live": true, "ttl": 2.5}), "ttl"),
        (json!({"stream": "a", "live": true, "ttl": "60"}), "ttl"),
        (json!({"stream": "a", "live": "true"}), "live"),
        (json!({"stream": "a", "dvr": 1}), "dvr"),
        (json!({"stream": "a", "copy": []}), "copy"),
        (json!({"stream": "a"}), "live, dvr and copy"),
        (
            json!({"stream": "a", "live": false, "dvr": false, "copy": false}),
            "live, dvr and copy",
        ),
        (
            json!({"stream": "a", "live": true, "from": 10}),
            "from and to",
        ),
        (
            json!({"stream": "a", "live": true, "to": 10}),
            "from and to",
        ),
        (
            json!({"stream": "a", "dvr": true, "from": 20, "to": 10}),
            "to must not be before from",
        ),
        (json!({"stream": "a", "dvr": true, "from": -1}), "from"),
        (json!({"stream": "a", "copy": true, "to": "x"}), "to"),
        (
            json!({"stream": "a", "live": true, "dvr_from": 1}),
            "dvr_from",
        ),
        (json!(["a", true]), "named params"),
    ] {
        let answer = create(&w, &olivia, params.clone()).await;
        let message = assert_rpc_error(&answer, StatusCode::BAD_REQUEST, -32602);
        assert!(message.contains(naming), "{params}: {message:?}");
        assert_eq!(answer.body["id"], 1);
    }
    assert_eq!(
        stream_rows(&w),
        rows_before,
        "no refused call issued a token"
    );
}

async fn the_operator_caps_ttl(backend: Backend) {
    let w = world(backend)
        .config(|c| c.tokens.stream_token_max_ttl = Some(600))
        .build()
        .await;
    let olivia = w.access_token("olivia", "acme").await;
    let c = claims(
        &issued(
            &w,
            &olivia,
            json!({"stream": "a", "live": true, "ttl": 600}),
        )
        .await,
    );
    assert_eq!(c["exp"].as_i64(), c["iat"].as_i64().map(|t| t + 600));
    for ttl in [601, 0] {
        let answer = create(
            &w,
            &olivia,
            json!({"stream": "a", "live": true, "ttl": ttl}),
        )
        .await;
        let message = assert_rpc_error(&answer, StatusCode::BAD_REQUEST, -32602);
        assert!(message.contains("ttl"), "{message}");
    }
    // Without a ttl the default of 3600 is over the cap too: the caller must ask for less.
    let answer = create(&w, &olivia, json!({"stream": "a", "live": true})).await;
    assert_rpc_error(&answer, StatusCode::BAD_REQUEST, -32602);
}

async fn protocol_errors_are_json_rpc_errors(backend: Backend) {
    let w = world(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    for body in [
        "{",
        "not json",
        r#"{"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "id": 1, "id": 2}"#,
        r#"{"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "params": {"stream": "a", "live": true, "live": false}, "id": 1}"#,
        "",
    ] {
        let answer = post(&w, Some(&olivia), body).await;
        assert_rpc_error(&answer, StatusCode::BAD_REQUEST, -32700);
        assert_eq!(answer.body["id"], Value::Null, "{body}");
    }
    for (body, id) in [
        (json!(7), Value::Null),
        (json!([]), Value::Null),
        (json!({"jsonrpc": "2.0", "id": 3}), json!(3)),
        (
            json!({"jsonrpc": "1.0", "method": "Auth.CreateApiToken", "id": "x"}),
            json!("x"),
        ),
        (json!({"method": "Auth.CreateApiToken", "id": 4}), json!(4)),
        (json!({"jsonrpc": "2.0", "method": 5, "id": 5}), json!(5)),
        (
            json!({"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "params": "a", "id": 6}),
            json!(6),
        ),
        (
            json!({"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "id": [1]}),
            Value::Null,
        ),
    ] {
        let answer = post(&w, Some(&olivia), &body.to_string()).await;
        assert_rpc_error(&answer, StatusCode::BAD_REQUEST, -32600);
        assert_eq!(answer.body["id"], id, "{body}");
    }
    let answer = call(&w, Some(&olivia), "Auth.DeleteEverything", json!({})).await;
    let message = assert_rpc_error(&answer, StatusCode::BAD_REQUEST, -32601);
    assert!(message.contains("Auth.DeleteEverything"), "{message}");

    // Not JSON by its content type, or too large: refused before reading any call.
    let answer = Answer::send(
        w.app
            .request(Method::POST, "/api/")
            .bearer_auth(&olivia)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("stream=a&live=true"),
    )
    .await;
    assert_rpc_error(&answer, StatusCode::UNSUPPORTED_MEDIA_TYPE, -32600);
    let huge = json!({"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "params": {"stream": "x".repeat(70_000)}, "id": 1});
    let answer = post(&w, Some(&olivia), &huge.to_string()).await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.text
    );
    let batch: Vec<Value> = (0..101)
        .map(|i| json!({"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "params": {"stream": "a", "live": true}, "id": i}))
        .collect();
    let answer = post(&w, Some(&olivia), &Value::Array(batch).to_string()).await;
    let message = assert_rpc_error(&answer, StatusCode::BAD_REQUEST, -32600);
    assert!(message.contains("100"), "{message}");
    // Only POST.
    let answer = w.app.get("/api/").await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(stream_rows(&w), 0, "nothing was issued");
}

async fn batches_answer_each_call_and_skip_notifications(backend: Backend) {
    let w = world(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    let batch = json!([
        {"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "params": {"stream": "a", "live": true}, "id": "first"},
        {"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "params": {"stream": "b"}, "id": 2},
        {"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "params": {"stream": "c", "dvr": true}},
        {"jsonrpc": "2.0", "method": "Nope", "id": 3},
        {"jsonrpc": "2.0", "method": "Nope"},
        17,
        {"jsonrpc": "2.0", "method": "Auth.CreateAccessToken", "params": {"stream": "d", "copy": true}, "id": null}
    ]);
    let answer = post(&w, Some(&olivia), &batch.to_string()).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let entries = answer.body.as_array().expect("an array of answers");
    assert_eq!(
        entries.len(),
        5,
        "notifications get no entry: {}",
        answer.text
    );
    let by_id = |id: Value| entries.iter().filter(|e| e["id"] == id).collect::<Vec<_>>();
    let first = by_id(json!("first"));
    assert_eq!(
        claims(first[0]["result"].as_str().expect("token"))["sub"],
        "a"
    );
    assert_eq!(by_id(json!(2))[0]["error"]["code"], -32602);
    assert_eq!(by_id(json!(3))[0]["error"]["code"], -32601);
    // The invalid entry and the call with id null both answer with id null.
    let nulls = by_id(Value::Null);
    assert_eq!(nulls.len(), 2, "{}", answer.text);
    assert!(nulls.iter().any(|e| e["error"]["code"] == -32600));
    assert!(nulls.iter().any(|e| e["result"]
        .as_str()
        .is_some_and(|t| claims(t)["sub"] == "d")));
    // The notification ran: three tokens were issued (a, c and d).
    assert_eq!(stream_rows(&w), 3);

    // Notifications only: nothing to answer.
    let only = json!([
        {"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "params": {"stream": "e", "live": true}},
        {"jsonrpc": "2.0", "method": "Nope"}
    ]);
    let answer = post(&w, Some(&olivia), &only.to_string()).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.text);
    assert!(answer.text.is_empty());
    let single = json!({"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "params": {"stream": "f", "live": true}});
    let answer = post(&w, Some(&olivia), &single.to_string()).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.text);
    assert_eq!(stream_rows(&w), 5);
    // A failed notification is not answered either; a bad credential still is a 401.
    let failing =
        json!({"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "params": {"stream": ""}});
    let answer = post(&w, Some(&olivia), &failing.to_string()).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.text);
    assert!(answer.text.is_empty());
    let answer = post(&w, Some("nope"), &single.to_string()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    assert!(answer.header("www-authenticate").is_some());
    assert_eq!(stream_rows(&w), 5);
    // `/api` without the slash is the same endpoint.
    let answer = Answer::send(
        w.app
            .request(Method::POST, "/api")
            .bearer_auth(&olivia)
            .header(CONTENT_TYPE, "application/json")
            .body(json!({"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "params": {"stream": "g", "live": true}, "id": 9}).to_string()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["id"], 9);
}

async fn only_admins_and_owners_with_the_right_credential_create(backend: Backend) {
    let w = world(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    let params = json!({"stream": "a", "live": true});

    // No credential, or a bad one: -32001 with RFC 6750's challenge.
    let answer = call(&w, None, "Auth.CreateApiToken", params.clone()).await;
    assert_rpc_error(&answer, StatusCode::UNAUTHORIZED, -32001);
    assert_eq!(
        answer.header("www-authenticate"),
        Some(r#"Bearer realm="keyframe""#)
    );
    for bad in [
        "not-a-token",
        "kfpat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let answer = create(&w, bad, params.clone()).await;
        assert_rpc_error(&answer, StatusCode::UNAUTHORIZED, -32001);
        assert_eq!(
            answer.header("www-authenticate"),
            Some(r#"Bearer realm="keyframe", error="invalid_token""#)
        );
    }
    // A batch with a bad credential is a 401 too, each call answered.
    let batch = json!([
        {"jsonrpc": "2.0", "method": "Auth.CreateApiToken", "params": params, "id": 1},
        {"jsonrpc": "2.0", "method": "Auth.RevokeToken", "params": {"jti": "x"}, "id": 2}
    ]);
    let answer = post(&w, Some("nope"), &batch.to_string()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(answer.header("www-authenticate").is_some());
    assert_eq!(answer.body[0]["error"]["code"], -32001, "{}", answer.text);
    assert_eq!(answer.body[1]["error"]["code"], -32001, "{}", answer.text);

    // A member may not: -32003.
    let max = w.access_token("max", "acme").await;
    let message = assert_rpc_error(
        &create(&w, &max, params.clone()).await,
        StatusCode::FORBIDDEN,
        -32003,
    );
    assert!(message.contains("admin or owner"), "{message}");
    // Nor olivia where she is only a member.
    let olivia_beta = w.access_token("olivia", "beta").await;
    assert_rpc_error(
        &create(&w, &olivia_beta, params.clone()).await,
        StatusCode::FORBIDDEN,
        -32003,
    );
    // An owner's access token from a client without keyframe:tokens: forbidden, scope named.
    let player = w.clients[1].clone();
    let scoped = w
        .app
        .password_grant(&player, "olivia", "olivia-pw", &[("tenant", "acme")])
        .await
        .ok()
        .access_token();
    let answer = create(&w, &scoped, params.clone()).await;
    assert_rpc_error(&answer, StatusCode::FORBIDDEN, -32003);
    assert_eq!(
        answer.header("www-authenticate"),
        Some(r#"Bearer realm="keyframe", error="insufficient_scope", scope="keyframe:tokens""#)
    );
    // Even a forbidden caller's bad params are not looked at.
    assert_rpc_error(
        &create(&w, &max, json!({"stream": ""})).await,
        StatusCode::FORBIDDEN,
        -32003,
    );
    assert_eq!(stream_rows(&w), 0);

    // API tokens: a system token with admin, a personal token of the owner; not a system token
    // with member only. The stream token is their tenant's.
    let admin_system = secret(&w.system_token(&olivia, "Encoder", &["admin"]).await);
    let member_system = secret(&w.system_token(&olivia, "Viewer", &["member"]).await);
    let personal = secret(&w.personal_token(&olivia, "Laptop").await);
    for bearer in [&admin_system, &personal] {
        let token = issued(&w, bearer, params.clone()).await;
        assert_eq!(claims(&token)["tenant"], "acme");
    }
    assert_rpc_error(
        &create(&w, &member_system, params.clone()).await,
        StatusCode::FORBIDDEN,
        -32003,
    );
    // A JWT exchanged from the admin system token acts as that token.
    let exchanged = w.exchange(&admin_system).await.ok().access_token();
    issued(&w, &exchanged, params.clone()).await;
    assert_eq!(stream_rows(&w), 3);
}

/// Stream-token rows in the database.
fn stream_rows(w: &World) -> i64 {
    w.app.stream_token_rows()
}

// ---------------------------------------------------------------------------------------------
// The call-back and revocation.

async fn stream_auth(w: &World, query: &[(&str, &str)]) -> Answer {
    Answer::send(w.app.request(Method::GET, "/api/stream-auth").query(query)).await
}

#[track_caller]
fn assert_allowed(answer: &Answer) {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
}

#[track_caller]
fn assert_denied(answer: &Answer, reason: &str) {
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert!(
        answer.text.contains(reason),
        "{:?} should say {reason:?}",
        answer.text
    );
}

async fn the_call_back_decides_each_play(backend: Backend) {
    let w = world(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    let now = w.app.clock.now();
    let dvr = issued(
        &w,
        &olivia,
        json!({"stream": "cam1", "dvr": true, "from": 1000, "to": 2000, "ttl": 300}),
    )
    .await;
    let ask = |token: &str, media_request: &str| {
        let token = token.to_owned();
        let media_request = media_request.to_owned();
        let w = &w;
        async move {
            stream_auth(
                w,
                &[
                    ("name", "cam1"),
                    ("token", &token),
                    ("ip", "10.0.0.1"),
                    ("proto", "hls"),
                    ("request_type", "new_session"),
                    ("session_id", "6217fd62-16da-4206-9da9-0173d7552a14"),
                    ("media_request", &media_request),
                    ("stream_clients", "1"),
                    ("something_flussonic_adds_later", "x"),
                ],
            )
            .await
        }
    };
    // DVR inside the window, bounds inclusive.
    for request in [
        "dvr_session-hls_mbr_playlist-1000-1000",
        "dvr_stream_handler-ts_stream-1500-10",
        "dvr_handler-timeshift_abs-1000",
        "hls_timeshift_playlist-hls_timeshift_abs-2000",
    ] {
        let answer = ask(&dvr, request).await;
        assert_allowed(&answer);
        assert_eq!(
            answer.body,
            json!({"allowed_dvr_ranges": [{"opened_at": 1000, "closed_at": 2000}]}),
            "{request}"
        );
        assert_eq!(
            answer.header("x-authduration"),
            Some("60"),
            "the cache setting"
        );
        assert_eq!(answer.header("x-userid"), claims(&dvr)["jti"].as_str());
    }
    // One second outside either bound, a span running past the end, the archive "now".
    for request in [
        "dvr_session-hls_mbr_playlist-999-10",
        "dvr_session-hls_mbr_playlist-1990-11",
        "dvr_handler-timeshift_abs-2001",
        "dvr_handler-timeshift_rel-60",
    ] {
        assert_denied(&ask(&dvr, request).await, "outside the token's window");
    }
    // What the token does not permit: live (also for an unknown request), a download.
    assert_denied(
        &ask(&dvr, "hls_live-hls_mbr_playlist").await,
        "live not permitted",
    );
    assert_denied(
        &ask(&dvr, "brand_new_handler-x").await,
        "live not permitted",
    );
    assert_denied(
        &ask(&dvr, "dvr_handler-mp4-1000-60").await,
        "copy not permitted",
    );
    assert_denied(
        &ask(&dvr, "dvr_handler-timeshift_abs-12x").await,
        "malformed",
    );

    // A relative timeshift is measured from the server's now.
    let recent = issued(
        &w,
        &olivia,
        json!({"stream": "cam1", "dvr": true, "copy": true, "from": now - 3600, "ttl": 0}),
    )
    .await;
    assert_allowed(&ask(&recent, "dvr_handler-timeshift_rel-3600").await);
    assert_denied(
        &ask(&recent, "dvr_handler-timeshift_rel-3601").await,
        "outside",
    );
    assert_allowed(&ask(&recent, &format!("dvr_handler-mp4-{now}-60")).await);
    let open = ask(&recent, "dvr_session-bootstrap-99999-1").await;
    assert_denied(&open, "outside");
    let unbounded = ask(&recent, &format!("dvr_handler-timeshift_abs-{now}")).await;
    assert_eq!(
        unbounded.body,
        json!({"allowed_dvr_ranges": [{"opened_at": now - 3600, "closed_at": 0}]})
    );
    // ttl 0: cached for the setting, there is no expiry to stop at.
    assert_eq!(unbounded.header("x-authduration"), Some("60"));

    // Live without a window: an empty body; the cache never reaches past exp.
    let live = issued(
        &w,
        &olivia,
        json!({"stream": "cam1", "live": true, "ttl": 30}),
    )
    .await;
    let answer = ask(&live, "hls_live-hls_mbr_playlist").await;
    assert_allowed(&answer);
    assert_eq!(answer.body, json!({}));
    assert_eq!(answer.header("x-authduration"), Some("30"));
    assert_allowed(&ask(&live, "").await);
    assert_allowed(&ask(&live, "mpegts_handler-request").await);
    w.app.clock.advance(29);
    assert_eq!(
        ask(&live, "hls_live-hls_mbr_playlist")
            .await
            .header("x-authduration"),
        Some("1")
    );
    w.app.clock.advance(1);
    assert_denied(&ask(&live, "hls_live-hls_mbr_playlist").await, "expired");

    // Another stream, a tampered or missing token, a duplicated parameter.
    let other = issued(&w, &olivia, json!({"stream": "cam2", "live": true})).await;
    assert_denied(&ask(&other, "hls_live-x").await, "another stream");
    let last = if other.ends_with('A') { "B" } else { "A" };
    let tampered = format!("{}{last}", &other[..other.len() - 1]);
    assert_denied(
        &ask(&tampered, "hls_live-x").await,
        "not a valid stream token",
    );
    assert_denied(&ask("", "hls_live-x").await, "no token");
    assert_denied(
        &ask(&olivia, "hls_live-x").await,
        "not a valid stream token",
    );
    assert_denied(
        &stream_auth(
            &w,
            &[("name", "cam2"), ("token", &other), ("token", &other)],
        )
        .await,
        "more than once",
    );
    assert_denied(
        &stream_auth(&w, &[("token", &other)]).await,
        "no stream name",
    );
    let cam2 = stream_auth(&w, &[("name", "cam2"), ("token", &other)]).await;
    assert_allowed(&cam2);

    // nbf ahead of the server's clock: not valid yet.
    w.app.clock.advance(600);
    let olivia = w.access_token("olivia", "acme").await;
    let later = issued(&w, &olivia, json!({"stream": "cam2", "live": true})).await;
    w.app.clock.advance(-600);
    assert_denied(
        &stream_auth(&w, &[("name", "cam2"), ("token", &later)]).await,
        "not valid yet",
    );
}

async fn revoked_tokens_fail_at_once_and_are_listed(backend: Backend) {
    let w = world(backend)
        .user("bob", "bob-pw", &["beta:owner"])
        .build()
        .await;
    let olivia = w.access_token("olivia", "acme").await;
    let list = "/api/v1/tenants/acme/stream-tokens/revoked";
    let empty = w.app.get(list).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.body, json!({"revoked": []}));
    let tag = empty.header("etag").expect("an ETag").to_owned();

    let by_token = issued(&w, &olivia, json!({"stream": "cam1", "live": true})).await;
    let by_jti = issued(
        &w,
        &olivia,
        json!({"stream": "cam1", "live": true, "ttl": 0}),
    )
    .await;
    let kept = issued(&w, &olivia, json!({"stream": "cam1", "live": true})).await;
    let play = |token: String| {
        let w = &w;
        async move { stream_auth(w, &[("name", "cam1"), ("token", &token)]).await }
    };
    assert_allowed(&play(by_token.clone()).await);

    // Revocation by the token itself and by its jti; both answer true, twice too.
    for _ in 0..2 {
        let answer = call(
            &w,
            Some(&olivia),
            "Auth.RevokeToken",
            json!({"token": by_token}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.body["result"], true);
    }
    let jti = claims(&by_jti)["jti"].as_str().expect("jti").to_owned();
    let answer = call(&w, Some(&olivia), "Auth.RevokeToken", json!({"jti": jti})).await;
    assert_eq!(answer.body["result"], true, "{}", answer.text);
    assert_denied(&play(by_token.clone()).await, "revoked");
    assert_denied(&play(by_jti.clone()).await, "revoked");
    assert_allowed(&play(kept.clone()).await);

    let listed = w.app.get(list).await;
    let mut expected = vec![claims(&by_token)["jti"].clone(), json!(jti)];
    expected.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    assert_eq!(listed.body, json!({"revoked": expected}));
    let new_tag = listed.header("etag").expect("an ETag").to_owned();
    assert_ne!(new_tag, tag, "the list changed");
    // Polling with the tag: 304 without a body; with the old tag: the list.
    let poll = |tag: String| {
        let w = &w;
        async move { Answer::send(w.app.request(Method::GET, list).header(IF_NONE_MATCH, tag)).await }
    };
    let unchanged = poll(new_tag.clone()).await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    assert!(unchanged.text.is_empty());
    assert_eq!(unchanged.header("etag"), Some(new_tag.as_str()));
    assert_eq!(
        poll(format!("\"other\", W/{new_tag}")).await.status,
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(poll(tag.clone()).await.status, StatusCode::OK);

    // Only the tenant's own: beta's owner cannot revoke acme's tokens, by token or by jti.
    let bob = w.access_token("bob", "beta").await;
    let kept_jti = claims(&kept)["jti"].as_str().expect("jti").to_owned();
    let answer = call(&w, Some(&bob), "Auth.RevokeToken", json!({"token": kept})).await;
    assert_rpc_error(&answer, StatusCode::FORBIDDEN, -32003);
    let answer = call(&w, Some(&bob), "Auth.RevokeToken", json!({"jti": kept_jti})).await;
    let message = assert_rpc_error(&answer, StatusCode::BAD_REQUEST, -32602);
    assert!(message.contains("jti"), "{message}");
    assert_allowed(&play(kept.clone()).await);
    assert_eq!(
        w.app
            .get("/api/v1/tenants/beta/stream-tokens/revoked")
            .await
            .body,
        json!({"revoked": []})
    );
    // Unknown ids and foreign tokens are refused; so are members.
    for params in [
        json!({"jti": "unknown"}),
        json!({"token": "a.b.c"}),
        json!({}),
        json!({"jti": "a", "token": "b"}),
    ] {
        let answer = call(&w, Some(&olivia), "Auth.RevokeToken", params.clone()).await;
        assert_rpc_error(&answer, StatusCode::BAD_REQUEST, -32602);
    }
    let max = w.access_token("max", "acme").await;
    let answer = call(&w, Some(&max), "Auth.RevokeToken", json!({"jti": kept_jti})).await;
    assert_rpc_error(&answer, StatusCode::FORBIDDEN, -32003);
    assert_allowed(&play(kept.clone()).await);

    // Once a revoked token expires it leaves the list (the ttl-0 one never does).
    w.app.clock.advance(3600);
    assert_eq!(w.app.get(list).await.body, json!({"revoked": [jti]}));
    // Unknown tenants: 404.
    assert_eq!(
        w.app
            .get("/api/v1/tenants/nobody/stream-tokens/revoked")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        w.app
            .get("/api/v1/tenants/Not%20A%20Slug/stream-tokens/revoked")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// A key rotation must not break stream tokens that outlive the access-token lifetime: the key
/// that signed them stays published until the last of them expires.
async fn rotated_keys_stay_published_for_live_stream_tokens(backend: Backend) {
    let w = world(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    let token = issued(
        &w,
        &olivia,
        json!({"stream": "cam1", "live": true, "ttl": 86_400}),
    )
    .await;
    let kid = header(&token)["kid"].as_str().expect("kid").to_owned();
    let rotated = w.cli(&["--json", "key", "rotate"]).await;
    assert_ne!(rotated["kid"], kid.as_str(), "{rotated}");
    // Long after the retired key would have left the JWKS for access tokens.
    w.app.clock.advance(7200);
    let twin = w.app.spawn_twin().await;
    let jwks = twin.jwks().await;
    assert!(
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["kid"] == kid.as_str()),
        "{jwks}"
    );
    let c = verify_offline(&jwks, &token, &w.app.issuer).expect("still verifies offline");
    assert_eq!(c["sub"], "cam1");
    let answer = Answer::send(
        twin.request(Method::GET, "/api/stream-auth")
            .query(&[("name", "cam1"), ("token", token.as_str())]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    // Once the token has expired the key is no longer published.
    w.app.clock.advance(86_400);
    let later = w.app.spawn_twin().await;
    let jwks = later.jwks().await;
    assert!(
        !jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .any(|k| k["kid"] == kid.as_str()),
        "{jwks}"
    );
}

/// `keyframe verify-token` on the world's database: `Ok(claims)` on exit 0, the reason on 1.
async fn verify_token(w: &World, token: &str, args: &[&str]) -> Result<Value, String> {
    let mut all = vec!["--json", "verify-token", token];
    all.extend_from_slice(args);
    let run = w.app.cli(&all, None).await;
    let answer: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"));
    match (run.code, answer["allowed"].as_bool()) {
        (0, Some(true)) => Ok(answer["claims"].clone()),
        (1, Some(false)) => Err(answer["reason"].as_str().expect("reason").to_owned()),
        _ => panic!("verify-token answered {run:?}"),
    }
}

async fn verify_token_checks_as_a_media_server_does(backend: Backend) {
    let w = world(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    let now = w.app.clock.now();
    let token = issued(
        &w,
        &olivia,
        json!({"stream": "cam1", "dvr": true, "from": 1000, "to": 2000, "ttl": 600}),
    )
    .await;
    let at = |t: i64| t.to_string();
    let (nbf, exp) = (at(now), at(now + 600));
    let claims = verify_token(&w, &token, &["--at", &nbf])
        .await
        .expect("allowed");
    assert_eq!(claims["sub"], "cam1");
    assert_eq!(claims["window"], json!({"from": 1000, "to": 2000}));
    for (args, expected) in [
        (
            vec![
                "--at",
                &nbf,
                "--stream",
                "cam1",
                "--action",
                "dvr",
                "--position",
                "1000",
            ],
            Ok(()),
        ),
        (
            vec!["--at", &nbf, "--action", "dvr", "--position", "2000"],
            Ok(()),
        ),
        (vec!["--at", &nbf, "--action", "dvr"], Ok(())),
        (
            vec!["--at", &nbf, "--action", "dvr", "--position", "999"],
            Err("outside the token's window"),
        ),
        (
            vec!["--at", &nbf, "--action", "dvr", "--position", "2001"],
            Err("outside the token's window"),
        ),
        (
            vec!["--at", &nbf, "--action", "live"],
            Err("live not permitted"),
        ),
        (
            vec!["--at", &nbf, "--action", "copy", "--position", "1500"],
            Err("copy not permitted"),
        ),
        (
            vec!["--at", &nbf, "--stream", "cam2"],
            Err("another stream"),
        ),
        (vec!["--at", &at(now - 1)], Err("not valid yet")),
        (vec!["--at", &at(now + 599)], Ok(())),
        (vec!["--at", &exp], Err("expired")),
    ] {
        let verdict = verify_token(&w, &token, &args).await.map(|_| ());
        match expected {
            Ok(()) => assert_eq!(verdict, Ok(()), "{args:?}"),
            Err(reason) => assert!(
                verdict.as_ref().is_err_and(|r| r.contains(reason)),
                "{args:?}: {verdict:?}"
            ),
        }
    }
    // ttl 0 never expires; revocation ends it.
    let forever = issued(
        &w,
        &olivia,
        json!({"stream": "cam1", "live": true, "ttl": 0}),
    )
    .await;
    let far = at(now + 100 * 365 * 86_400);
    assert!(verify_token(&w, &forever, &["--at", &far]).await.is_ok());
    let answer = call(
        &w,
        Some(&olivia),
        "Auth.RevokeToken",
        json!({"token": forever}),
    )
    .await;
    assert_eq!(answer.body["result"], true, "{}", answer.text);
    assert_eq!(
        verify_token(&w, &forever, &["--at", &far]).await,
        Err("revoked".into())
    );
    // Garbage, and an access token, are not stream tokens.
    for bad in ["garbage", olivia.as_str()] {
        assert_eq!(
            verify_token(&w, bad, &[]).await,
            Err("not a valid stream token".into())
        );
    }
    // --position asks about the archive: it needs --action.
    let run = w
        .app
        .cli(&["verify-token", &token, "--position", "5"], None)
        .await;
    assert_eq!(run.code, 2, "{run:?}");
}

backend_tests!(
    verify_token_checks_as_a_media_server_does,
    tokens_are_signed_jwts_that_verify_offline,
    every_param_rule_answers_invalid_params,
    the_operator_caps_ttl,
    protocol_errors_are_json_rpc_errors,
    batches_answer_each_call_and_skip_notifications,
    only_admins_and_owners_with_the_right_credential_create,
    the_call_back_decides_each_play,
    revoked_tokens_fail_at_once_and_are_listed,
    rotated_keys_stay_published_for_live_stream_tokens,
);
