//! `Auth.SignUrl`: OvenMediaEngine SignedPolicy URLs signed with the tenant's URL secret. Each
//! signed URL is judged twice, by `keyframe verify-url` and by an implementation of
//! OvenMediaEngine's check written here from its documentation (HMAC-SHA1 over everything
//! before `&signature=`, then the policy's times and address), and both must agree.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::{keyframe_with_env, Answer, Backend, World};

const KEY: &str = "8f2b6c1d9e0a4f37b5c6d7e8f9a0b1c2d3e4f5061728394a5b6c7d8e9f0a1b2c";
/// OvenMediaEngine's documented example.
const OME_KEY: &str = "1kU^b6";
const OME_URL: &str = "ws://192.168.0.100:3333/app/stream";
const OME_SIGNED: &str = "ws://192.168.0.100:3333/app/stream\
                          ?policy=eyJ1cmxfZXhwaXJlIjoxMzk5NzIxNTgxfQ\
                          &signature=dvVdBpoxAeCPl94Kt5RoiqLI0YE";

async fn sign(w: &World, bearer: &str, params: Value) -> Answer {
    let body = json!({"jsonrpc": "2.0", "method": "Auth.SignUrl", "params": params, "id": 1});
    Answer::send(
        w.app
            .request(Method::POST, "/api/")
            .bearer_auth(bearer)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string()),
    )
    .await
}

async fn signed(w: &World, bearer: &str, params: Value) -> String {
    let answer = sign(w, bearer, params.clone()).await;
    assert_eq!(answer.status, StatusCode::OK, "{params}: {}", answer.text);
    answer.body["result"]
        .as_str()
        .unwrap_or_else(|| panic!("no URL: {}", answer.text))
        .to_owned()
}

#[track_caller]
fn assert_rpc_error(answer: &Answer, status: StatusCode, code: i64) -> String {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.body["error"]["code"], code, "{}", answer.text);
    answer.body["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned()
}

/// OvenMediaEngine's check, from its SignedPolicy documentation, independent of Keyframe's
/// code: `Ok(())` or the reason.
fn ome_check(url: &str, key: &str, client_ip: [u8; 4], now_ms: i64) -> Result<(), String> {
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::sign::Signer;
    let (signed_part, signature) = url
        .rsplit_once("&signature=")
        .ok_or("no signature parameter")?;
    let hmac = PKey::hmac(key.as_bytes()).map_err(|e| e.to_string())?;
    let mut signer = Signer::new(MessageDigest::sha1(), &hmac).map_err(|e| e.to_string())?;
    signer
        .update(signed_part.as_bytes())
        .map_err(|e| e.to_string())?;
    let expected = URL_SAFE_NO_PAD.encode(signer.sign_to_vec().map_err(|e| e.to_string())?);
    if expected != signature {
        return Err("signature mismatch".into());
    }
    let query = signed_part.split_once('?').ok_or("no query")?.1;
    let encoded = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("policy="))
        .ok_or("no policy")?;
    let policy: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let expire = policy["url_expire"].as_i64().ok_or("no url_expire")?;
    if now_ms > expire {
        return Err("expired".into());
    }
    if policy["url_activate"].as_i64().is_some_and(|t| now_ms < t) {
        return Err("not active".into());
    }
    if policy["stream_expire"].as_i64().is_some_and(|t| now_ms > t) {
        return Err("stream expired".into());
    }
    if let Some(range) = policy["allow_ip"].as_str() {
        let (network, bits) = range.split_once('/').unwrap_or((range, "32"));
        let bits: u32 = bits.parse().map_err(|_| "bad prefix")?;
        let octets: Vec<u32> = network
            .split('.')
            .map(|o| o.parse::<u32>().map_err(|_| "bad network".to_owned()))
            .collect::<Result<_, _>>()?;
        let as_u32 = |o: &[u32]| (o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3];
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        let client: Vec<u32> = client_ip.iter().map(|&b| u32::from(b)).collect();
        if as_u32(&octets) & mask != as_u32(&client) & mask {
            return Err("address not allowed".into());
        }
    }
    Ok(())
}

/// `keyframe verify-url` on the world's database: `Ok(())` when it exits 0, the reason else.
async fn verify_url(
    w: &World,
    env: &[(&str, &str)],
    url: &str,
    ip: &str,
    at_ms: i64,
) -> Result<(), String> {
    let at = at_ms.to_string();
    let run = keyframe_with_env(
        &w.app.db_url,
        env,
        &[
            "--json",
            "verify-url",
            url,
            "--tenant",
            "acme",
            "--ip",
            ip,
            "--at",
            &at,
        ],
        None,
    )
    .await;
    let answer: Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {run:?}"));
    match (run.code, answer["allowed"].as_bool()) {
        (0, Some(true)) => Ok(()),
        (1, Some(false)) => Err(answer["reason"].as_str().expect("reason").to_owned()),
        _ => panic!("verify-url answered {run:?}"),
    }
}

async fn urls_are_signed_as_ovenmediaengine_checks_them(backend: Backend) {
    for encrypted in [false, true] {
        let env: &[(&str, &str)] = if encrypted {
            &[("KEYFRAME_SECRET_KEY", KEY)]
        } else {
            &[]
        };
        let w = World::api_tokens(backend)
            .config(move |c| {
                c.secret_key =
                    encrypted.then(|| keyframe::secrets::SecretKey::parse(KEY).expect("key"));
            })
            .build()
            .await;
        let olivia = w.access_token("olivia", "acme").await;

        // Before the tenant has a secret: a clear refusal, not a 500.
        let answer = sign(&w, &olivia, json!({"url": OME_URL, "url_expire": 1})).await;
        let message = assert_rpc_error(&answer, StatusCode::CONFLICT, -32004);
        assert!(message.contains("url-secret acme --rotate"), "{message}");

        let set = keyframe_with_env(
            &w.app.db_url,
            env,
            &["tenant", "url-secret", "acme", "--set-stdin"],
            Some(&format!("{OME_KEY}\n")),
        )
        .await;
        assert_eq!(set.code, 0, "{set:?}");

        // The documented known answer, exactly.
        let known = signed(
            &w,
            &olivia,
            json!({"url": OME_URL, "url_expire": 1399721581}),
        )
        .await;
        assert_eq!(known, OME_SIGNED);
        assert_eq!(ome_check(&known, OME_KEY, [1, 2, 3, 4], 1399721580), Ok(()));

        let now = w.app.clock.now() * 1000;
        let ip = [10, 1, 2, 3];
        let base = "rtmp://media.example:1935/app/stream?quality=hd";
        let valid = signed(
            &w,
            &olivia,
            json!({"url": base, "url_expire": now + 60_000, "url_activate": now - 1000,
                   "stream_expire": now + 120_000, "allow_ip": "10.1.0.0/16"}),
        )
        .await;
        assert!(valid.starts_with(&format!("{base}&policy=")), "{valid}");
        let expired = signed(&w, &olivia, json!({"url": base, "url_expire": now - 1})).await;
        let early = signed(
            &w,
            &olivia,
            json!({"url": base, "url_expire": now + 60_000, "url_activate": now + 30_000}),
        )
        .await;
        let elsewhere = signed(
            &w,
            &olivia,
            json!({"url": base, "url_expire": now + 60_000, "allow_ip": "10.2.0.0/16"}),
        )
        .await;
        let tampered_url = valid.replace("/app/stream", "/app/other");
        let (head, tail) = valid.split_once("policy=").expect("policy");
        let forged_policy =
            URL_SAFE_NO_PAD.encode(format!("{{\"url_expire\":{}}}", now + 1e9 as i64));
        let tampered_policy = format!(
            "{head}policy={forged_policy}&{}",
            tail.split_once('&').expect("signature").1
        );
        for (url, allowed) in [
            (&valid, true),
            (&expired, false),
            (&early, false),
            (&elsewhere, false),
            (&tampered_url, false),
            (&tampered_policy, false),
        ] {
            let oracle = ome_check(url, OME_KEY, ip, now);
            let ours = verify_url(&w, env, url, "10.1.2.3", now).await;
            assert_eq!(
                oracle.is_ok(),
                allowed,
                "{url}: OvenMediaEngine says {oracle:?}"
            );
            assert_eq!(ours.is_ok(), allowed, "{url}: verify-url says {ours:?}");
        }
        // An activation time is inclusive, an expiry exclusive of what follows it.
        assert_eq!(ome_check(&early, OME_KEY, ip, now + 30_000), Ok(()));
        assert_eq!(
            verify_url(&w, env, &early, "10.1.2.3", now + 30_000).await,
            Ok(())
        );
    }
}

async fn sign_url_params_and_roles(backend: Backend) {
    let w = World::api_tokens(backend).build().await;
    let olivia = w.access_token("olivia", "acme").await;
    let rotate = w
        .cli(&["--json", "tenant", "url-secret", "acme", "--rotate"])
        .await;
    let secret = rotate["secret"].as_str().expect("secret").to_owned();
    // Signing does not judge the times: an expired policy is signed as asked.
    let old = signed(
        &w,
        &olivia,
        json!({"url": "http://h:80/a", "url_expire": 0}),
    )
    .await;
    assert_eq!(ome_check(&old, &secret, [1, 1, 1, 1], 0), Ok(()));
    assert_eq!(
        ome_check(&old, &secret, [1, 1, 1, 1], 1),
        Err("expired".into())
    );
    for (params, naming) in [
        (json!({"url_expire": 1}), "url is required"),
        (json!({"url": "http://h:80/a"}), "url_expire is required"),
        (json!({"url": "http://h/a", "url_expire": 1}), "port"),
        (json!({"url": "not a url", "url_expire": 1}), "url"),
        (
            json!({"url": "http://h:80/a?policy=x", "url_expire": 1}),
            "already",
        ),
        (
            json!({"url": "http://h:80/a", "url_expire": -1}),
            "url_expire",
        ),
        (
            json!({"url": "http://h:80/a", "url_expire": "1"}),
            "url_expire",
        ),
        (
            json!({"url": "http://h:80/a", "url_expire": 1, "url_activate": 1.5}),
            "url_activate",
        ),
        (
            json!({"url": "http://h:80/a", "url_expire": 1, "stream_expire": -3}),
            "stream_expire",
        ),
        (
            json!({"url": "http://h:80/a", "url_expire": 1, "allow_ip": "::1"}),
            "allow_ip",
        ),
        (
            json!({"url": "http://h:80/a", "url_expire": 1, "allow_ip": "10.0.0.0/33"}),
            "allow_ip",
        ),
        (
            json!({"url": "http://h:80/a", "url_expire": 1, "real_ip": true}),
            "real_ip",
        ),
        (json!({"url": 5, "url_expire": 1}), "url must be a string"),
    ] {
        let answer = sign(&w, &olivia, params.clone()).await;
        let message = assert_rpc_error(&answer, StatusCode::BAD_REQUEST, -32602);
        assert!(message.contains(naming), "{params}: {message:?}");
    }
    // A member may not sign; nor may anyone without a credential.
    let max = w.access_token("max", "acme").await;
    let answer = sign(&w, &max, json!({"url": "http://h:80/a", "url_expire": 1})).await;
    assert_rpc_error(&answer, StatusCode::FORBIDDEN, -32003);
    let answer = sign(&w, "nope", json!({"url": "http://h:80/a", "url_expire": 1})).await;
    assert_rpc_error(&answer, StatusCode::UNAUTHORIZED, -32001);
    // Another tenant's secret is another key: beta has none.
    let beta = w.access_token("olivia", "beta").await;
    let answer = sign(&w, &beta, json!({"url": "http://h:80/a", "url_expire": 1})).await;
    assert_rpc_error(&answer, StatusCode::FORBIDDEN, -32003);
}

backend_tests!(
    urls_are_signed_as_ovenmediaengine_checks_them,
    sign_url_params_and_roles
);
