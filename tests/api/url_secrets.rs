//! Tenants' URL secrets for OvenMediaEngine's SignedPolicy (`tenant url-secret`) and the
//! `verify-url` check, through the real binary, with and without `KEYFRAME_SECRET_KEY`.

use keyframe::signed_url::{self, Policy};
use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::{keyframe_with_env, Backend, Run, TestDb};

const KEY: &str = "8f2b6c1d9e0a4f37b5c6d7e8f9a0b1c2d3e4f5061728394a5b6c7d8e9f0a1b2c";
const OTHER_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const WITH_KEY: &[(&str, &str)] = &[("KEYFRAME_SECRET_KEY", KEY)];
const NO_KEY: &[(&str, &str)] = &[];

/// OvenMediaEngine's documented example: this key signs this URL, whose policy's url_expire is
/// 1399721581 (milliseconds).
const OME_KEY: &str = "1kU^b6";
const OME_URL: &str = "ws://192.168.0.100:3333/app/stream\
                       ?policy=eyJ1cmxfZXhwaXJlIjoxMzk5NzIxNTgxfQ\
                       &signature=dvVdBpoxAeCPl94Kt5RoiqLI0YE";

async fn with_tenant(backend: Backend) -> TestDb {
    let db = TestDb::new(backend);
    let created = run(
        &db,
        NO_KEY,
        &["--json", "tenant", "create", "acme", "--name", "Acme"],
    )
    .await;
    created.json();
    db
}

async fn run(db: &TestDb, env: &[(&str, &str)], args: &[&str]) -> Run {
    keyframe_with_env(&db.url, env, args, None).await
}

async fn run_with_stdin(db: &TestDb, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Run {
    keyframe_with_env(&db.url, env, args, Some(stdin)).await
}

/// What the `url_secret` column of `tenant` holds.
fn stored(db: &TestDb, tenant: &str) -> Option<String> {
    use diesel::{QueryDsl, RunQueryDsl};
    use keyframe::db::schema::tenants;
    db.read(|conn| {
        tenants::table
            .find(tenant)
            .select(tenants::url_secret)
            .get_result(conn)
    })
}

async fn rotate(db: &TestDb, env: &[(&str, &str)]) -> String {
    let answer = run(
        db,
        env,
        &["--json", "tenant", "url-secret", "acme", "--rotate"],
    )
    .await
    .json();
    let secret = answer["secret"].as_str().expect("secret").to_owned();
    assert_eq!(answer, json!({ "tenant": "acme", "secret": secret }));
    secret
}

/// `verify-url --json` for tenant acme: (exit code, the one JSON object on stdout).
async fn verify(db: &TestDb, env: &[(&str, &str)], url: &str, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["--json", "verify-url", url, "--tenant", "acme"];
    args.extend_from_slice(extra);
    let out = run(db, env, &args).await;
    assert!(out.stderr.is_empty(), "a verdict is not an error: {out:?}");
    let answer = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {out:?}"));
    (out.code, answer)
}

/// A command that failed with exit `code` and one `error: ` line that does not contain `hidden`.
fn error_line(out: &Run, code: i32, hidden: &str) -> String {
    assert_eq!(out.code, code, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {out:?}");
    assert!(lines[0].starts_with("error: "), "{out:?}");
    assert!(!out.stderr.contains(hidden), "{out:?}");
    lines[0].to_owned()
}

fn policy(url_expire: i64) -> Policy {
    Policy {
        url_expire,
        url_activate: None,
        stream_expire: None,
        allow_ip: None,
    }
}

async fn rotate_stores_the_secret_sealed(backend: Backend) {
    let db = with_tenant(backend).await;
    assert_eq!(stored(&db, "acme"), None, "no secret until one is made");

    let first = rotate(&db, WITH_KEY).await;
    // 32 random bytes as unpadded base64url.
    assert_eq!(first.len(), 43, "{first}");
    assert!(first
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let sealed = stored(&db, "acme").expect("stored");
    assert!(sealed.starts_with("v1:"), "{sealed}");
    assert!(
        !sealed.contains(&first),
        "the secret is stored in the clear"
    );

    let second = rotate(&db, WITH_KEY).await;
    assert_ne!(first, second);
    let resealed = stored(&db, "acme").expect("stored");
    assert!(resealed.starts_with("v1:") && !resealed.contains(&second));
    assert_ne!(sealed, resealed);

    // The secret printed is the HMAC key Keyframe reads back: a URL signed with its text
    // verifies, one signed with the old secret does not.
    let url = "ws://media.example:3333/app/stream";
    let now = keyframe::clock::now_ms();
    let current = signed_url::sign(url, &policy(now + 60_000), second.as_bytes()).expect("sign");
    let old = signed_url::sign(url, &policy(now + 60_000), first.as_bytes()).expect("sign");
    let (code, answer) = verify(&db, WITH_KEY, &current, &[]).await;
    assert_eq!((code, &answer["allowed"]), (0, &json!(true)), "{answer}");
    let (code, answer) = verify(&db, WITH_KEY, &old, &[]).await;
    assert_eq!(
        (code, answer),
        (
            1,
            json!({ "allowed": false, "reason": "the signature does not match" })
        )
    );

    // People get a sentence and the secret alone on the last line.
    let human = run(&db, WITH_KEY, &["tenant", "url-secret", "acme", "--rotate"]).await;
    assert_eq!(human.code, 0, "{human:?}");
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert!(lines.len() >= 2, "{human:?}");
    assert!(lines[0].contains("acme"), "{human:?}");
    let shown = lines[lines.len() - 1];
    assert_eq!(shown.len(), 43, "{human:?}");
    assert!(!stored(&db, "acme").expect("stored").contains(shown));
}

async fn without_a_key_the_secret_is_stored_plain_and_sealed_once_a_key_is_set(backend: Backend) {
    let db = with_tenant(backend).await;
    let secret = rotate(&db, NO_KEY).await;
    assert_eq!(
        stored(&db, "acme").as_deref(),
        Some(format!("plain:{secret}").as_str())
    );
    // A plain secret still verifies once the operator has set a key...
    let url = signed_url::sign(
        "ws://media.example:3333/app/stream",
        &policy(keyframe::clock::now_ms() + 60_000),
        secret.as_bytes(),
    )
    .expect("sign");
    for env in [NO_KEY, WITH_KEY] {
        let (code, answer) = verify(&db, env, &url, &[]).await;
        assert_eq!((code, &answer["allowed"]), (0, &json!(true)), "{answer}");
    }
    // ...and the next set seals it.
    let set = run_with_stdin(
        &db,
        WITH_KEY,
        &["--json", "tenant", "url-secret", "acme", "--set-stdin"],
        &format!("{secret}\n"),
    )
    .await
    .json();
    assert_eq!(set, json!({ "tenant": "acme", "set": true }));
    let sealed = stored(&db, "acme").expect("stored");
    assert!(
        sealed.starts_with("v1:") && !sealed.contains(&secret),
        "{sealed}"
    );
    let (code, _) = verify(&db, WITH_KEY, &url, &[]).await;
    assert_eq!(code, 0);
}

async fn oven_media_engines_documented_example_verifies(backend: Backend) {
    let db = with_tenant(backend).await;
    let set = run_with_stdin(
        &db,
        WITH_KEY,
        &["tenant", "url-secret", "acme", "--set-stdin"],
        &format!("{OME_KEY}\r\nsecond line ignored\n"),
    )
    .await;
    assert_eq!(set.code, 0, "{set:?}");
    assert!(set.stdout.contains("acme"), "{set:?}");
    assert!(
        !set.stdout.contains(OME_KEY),
        "the secret is not printed: {set:?}"
    );
    let sealed = stored(&db, "acme").expect("stored");
    assert!(
        sealed.starts_with("v1:") && !sealed.contains(OME_KEY),
        "{sealed}"
    );

    let (code, answer) = verify(&db, WITH_KEY, OME_URL, &["--at", "1399721580"]).await;
    assert_eq!(
        (code, answer),
        (
            0,
            json!({ "allowed": true, "policy": { "url_expire": 1_399_721_581 } })
        )
    );
    let (code, answer) = verify(&db, WITH_KEY, OME_URL, &["--at", "1399721582"]).await;
    assert_eq!(
        (code, answer),
        (
            1,
            json!({ "allowed": false, "reason": "the URL has expired" })
        )
    );

    // Without --json: a sentence and the policy; the reason when denied.
    let db = &db;
    let at = |ms: &'static str| {
        let args = ["verify-url", OME_URL, "--tenant", "acme", "--at", ms];
        async move { run(db, WITH_KEY, &args).await }
    };
    let allowed = at("1399721580").await;
    assert_eq!(allowed.code, 0, "{allowed:?}");
    assert!(allowed.stdout.starts_with("Allowed"), "{allowed:?}");
    assert!(
        allowed
            .stdout
            .lines()
            .any(|l| l.starts_with("url_expire") && l.ends_with("1399721581")),
        "{allowed:?}"
    );
    let denied = at("1399721582").await;
    assert_eq!(denied.code, 1, "{denied:?}");
    assert!(denied.stdout.contains("expired"), "{denied:?}");
    assert!(denied.stderr.is_empty(), "{denied:?}");

    // Any change to the signature is refused.
    let (base, signature) = OME_URL.rsplit_once('=').expect("signature");
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{base}={flipped}{}", &signature[1..]);
    let (code, answer) = verify(db, WITH_KEY, &tampered, &["--at", "1399721580"]).await;
    assert_eq!(
        (code, answer),
        (
            1,
            json!({ "allowed": false, "reason": "the signature does not match" })
        )
    );
}

async fn the_client_address_must_be_inside_allow_ip(backend: Backend) {
    let db = with_tenant(backend).await;
    run_with_stdin(
        &db,
        WITH_KEY,
        &["tenant", "url-secret", "acme", "--set-stdin"],
        OME_KEY,
    )
    .await;
    let restricted = Policy {
        allow_ip: Some("192.168.0.0/24".parse().expect("range")),
        ..policy(keyframe::clock::now_ms() + 3_600_000)
    };
    let url = signed_url::sign(
        "ws://media.example:3333/app/stream",
        &restricted,
        OME_KEY.as_bytes(),
    )
    .expect("sign");

    let refused = json!({ "allowed": false, "reason": "the client address is not allowed" });
    for outside in [&["--ip", "10.0.0.1"][..], &["--ip", "192.168.1.42"], &[]] {
        let (code, answer) = verify(&db, WITH_KEY, &url, outside).await;
        assert_eq!((code, &answer), (1, &refused), "{outside:?}");
    }
    // An IPv4 client as a dual-stack socket reports it is the same client.
    for inside in ["192.168.0.42", "::ffff:192.168.0.42"] {
        let (code, answer) = verify(&db, WITH_KEY, &url, &["--ip", inside]).await;
        assert_eq!(code, 0, "{inside}: {answer}");
        assert_eq!(answer["policy"]["allow_ip"], "192.168.0.0/24");
        assert_eq!(answer["policy"]["url_expire"], restricted.url_expire);
        assert_eq!(
            answer["policy"].as_object().map(|o| o.len()),
            Some(2),
            "only the fields that are set: {answer}"
        );
    }
}

async fn a_sealed_secret_needs_the_key_it_was_stored_with(backend: Backend) {
    let db = with_tenant(backend).await;
    let secret = rotate(&db, WITH_KEY).await;
    let url = signed_url::sign(
        "ws://media.example:3333/app/stream",
        &policy(keyframe::clock::now_ms() + 60_000),
        secret.as_bytes(),
    )
    .expect("sign");
    let args = ["verify-url", url.as_str(), "--tenant", "acme"];

    let missing = error_line(&run(&db, NO_KEY, &args).await, 2, &secret);
    assert!(missing.contains("KEYFRAME_SECRET_KEY"), "{missing}");
    assert!(missing.contains("not set"), "{missing}");

    let wrong_key = [("KEYFRAME_SECRET_KEY", OTHER_KEY)];
    let wrong = error_line(&run(&db, &wrong_key, &args).await, 2, &secret);
    assert!(wrong.contains("KEYFRAME_SECRET_KEY"), "{wrong}");
    assert!(!wrong.contains(OTHER_KEY), "{wrong}");

    let json = run(&db, NO_KEY, &[&["--json"][..], &args].concat()).await;
    assert_eq!(json.code, 2, "{json:?}");
    let error: Value = serde_json::from_str(json.stderr.trim()).expect("JSON error");
    assert_eq!(error["kind"], "config");
    assert!(!json.stderr.contains("panicked"), "{json:?}");

    // Nothing was lost: with the right key it still verifies.
    let (code, _) = verify(&db, WITH_KEY, &url, &[]).await;
    assert_eq!(code, 0);
}

async fn unknown_tenants_and_tenants_without_a_secret(backend: Backend) {
    let db = with_tenant(backend).await;
    for (args, stdin) in [
        (&["tenant", "url-secret", "ghost", "--rotate"][..], None),
        (
            &["tenant", "url-secret", "ghost", "--set-stdin"],
            Some(OME_KEY),
        ),
        (&["verify-url", OME_URL, "--tenant", "ghost"], None),
    ] {
        let out = keyframe_with_env(&db.url, WITH_KEY, args, stdin).await;
        let line = error_line(&out, 1, OME_KEY);
        assert!(line.contains("unknown tenant ghost"), "{line}");
    }
    assert_eq!(stored(&db, "acme"), None);

    let out = run(&db, WITH_KEY, &["verify-url", OME_URL, "--tenant", "acme"]).await;
    let line = error_line(&out, 1, OME_KEY);
    assert!(
        line.contains("keyframe tenant url-secret acme --rotate"),
        "says how to make one: {line}"
    );
}

async fn chosen_secrets_that_break_the_rules_are_refused(backend: Backend) {
    let db = with_tenant(backend).await;
    let args = ["--json", "tenant", "url-secret", "acme", "--set-stdin"];
    let too_long = "x".repeat(257);
    let refusals = [
        ("", "empty"),
        ("\n", "empty"),
        ("   \n", "whitespace"),
        (" s3cret-value\n", "whitespace"),
        ("s3cret-value \n", "whitespace"),
        ("s3cret\tvalue\n", "control"),
        (too_long.as_str(), "longer than 256"),
    ];
    for (stdin, rule) in refusals {
        let out = run_with_stdin(&db, NO_KEY, &args, stdin).await;
        let message = out.refused();
        assert!(message.contains(rule), "{stdin:?}: {message}");
        let secret = stdin.trim();
        assert!(secret.is_empty() || !message.contains(secret), "{message}");
        assert_eq!(stored(&db, "acme"), None, "{stdin:?} was stored");
    }
    // A refused secret leaves the one stored before.
    run_with_stdin(&db, NO_KEY, &args, OME_KEY).await.json();
    let before = stored(&db, "acme");
    assert_eq!(before.as_deref(), Some("plain:1kU^b6"));
    run_with_stdin(&db, NO_KEY, &args, " \n").await.refused();
    assert_eq!(stored(&db, "acme"), before);
}

backend_tests!(
    rotate_stores_the_secret_sealed,
    without_a_key_the_secret_is_stored_plain_and_sealed_once_a_key_is_set,
    oven_media_engines_documented_example_verifies,
    the_client_address_must_be_inside_allow_ip,
    a_sealed_secret_needs_the_key_it_was_stored_with,
    unknown_tenants_and_tenants_without_a_secret,
    chosen_secrets_that_break_the_rules_are_refused,
);

#[tokio::test]
async fn a_bad_secret_key_is_a_configuration_error_that_does_not_echo_it() {
    let db = TestDb::new(Backend::Sqlite);
    let bad_values = [
        "hunter2-is-not-a-key",
        // 64 characters, but not hex.
        "hunter2-hunter2-hunter2-hunter2-hunter2-hunter2-hunter2-hunter2-",
        // 44 base64 characters, but of 31 bytes.
        "aHVudGVyMi1odW50ZXIyLWh1bnRlcjItaHVudGVyMg==",
    ];
    for bad in bad_values {
        let from_env = [("KEYFRAME_SECRET_KEY", bad)];
        for out in [
            run(&db, &from_env, &["tenant", "list"]).await,
            run(&db, NO_KEY, &["tenant", "list", "--secret-key", bad]).await,
        ] {
            let line = error_line(&out, 2, bad);
            assert!(line.contains("KEYFRAME_SECRET_KEY"), "{line}");
            assert!(line.contains("64 hex"), "{line}");
            assert!(!line.contains("hunter2"), "{line}");
        }
    }
    // The help names the variable but never shows its value.
    let help = run(&db, &[("KEYFRAME_SECRET_KEY", KEY)], &["--help"]).await;
    assert_eq!(help.code, 0, "{help:?}");
    assert!(help.stdout.contains("KEYFRAME_SECRET_KEY"), "{help:?}");
    assert!(!help.stdout.contains(KEY), "{help:?}");
}

#[tokio::test]
async fn url_secret_takes_exactly_one_of_rotate_and_set_stdin() {
    let db = TestDb::new(Backend::Sqlite);
    for args in [
        &["tenant", "url-secret", "acme"][..],
        &["tenant", "url-secret", "acme", "--rotate", "--set-stdin"],
    ] {
        let out = run(&db, NO_KEY, args).await;
        assert_eq!(out.code, 2, "{args:?}: {out:?}");
        assert!(out.stderr.starts_with("error: "), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
    }
}
