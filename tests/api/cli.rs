use serde_json::{json, Value};

use crate::backend_tests;
use crate::helpers::{keyframe, Backend, ClientSpec, TestDb, World};

fn ids(list: &Value, key: &str, field: &str) -> Vec<String> {
    list[key]
        .as_array()
        .expect("list")
        .iter()
        .map(|o| o[field].as_str().expect("field").to_owned())
        .collect()
}

/// Whether `username` signs in with `password`, checked in storage.
async fn signs_in(conn: &mut keyframe::db::Conn, username: &str, password: &str) -> bool {
    keyframe::users::check_password(conn, username, password)
        .await
        .expect("check")
        .is_some()
}

async fn tenants_round_trip(backend: Backend) {
    let db = TestDb::new(backend);
    let created = keyframe(
        &db.url,
        &["--json", "tenant", "create", "acme", "--name", "Acme Corp"],
        None,
    )
    .await
    .json();
    assert_eq!(created["id"], "acme");
    assert_eq!(created["name"], "Acme Corp");
    assert!(created["created_at"].as_i64().expect("created_at") > 1_700_000_000);
    // --json works after the subcommand as well as before it.
    keyframe(
        &db.url,
        &["tenant", "create", "beta", "--name", "Beta", "--json"],
        None,
    )
    .await
    .json();

    let before = keyframe(&db.url, &["--json", "tenant", "list"], None)
        .await
        .json();
    let after = keyframe(&db.url, &["tenant", "list", "--json"], None)
        .await
        .json();
    assert_eq!(before, after);
    assert_eq!(before["tenants"].as_array().expect("tenants").len(), 2);
    assert_eq!(before["tenants"][0], created);
    assert_eq!(before["tenants"][1]["name"], "Beta");

    let human = keyframe(&db.url, &["tenant", "list"], None).await;
    assert_eq!(human.code, 0);
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines, ["ID    NAME", "acme  Acme Corp", "beta  Beta"]);
}

async fn users_and_memberships_round_trip(backend: Backend) {
    let db = TestDb::new(backend);
    for (id, name) in [("acme", "Acme"), ("beta", "Beta"), ("gamma", "Gamma")] {
        keyframe(
            &db.url,
            &["--json", "tenant", "create", id, "--name", name],
            None,
        )
        .await
        .json();
    }
    let alice = keyframe(
        &db.url,
        &[
            "--json",
            "user",
            "create",
            "Alice",
            "--password-stdin",
            "--tenant",
            "beta:owner",
            "--tenant",
            "acme",
        ],
        Some("s3cret pass\r\nignored second line\n"),
    )
    .await
    .json();
    assert_eq!(
        alice["username"], "alice",
        "usernames are case-insensitive, kept in lower case"
    );
    assert_eq!(alice["disabled"], false);
    assert_eq!(
        alice["default_tenant"], "beta",
        "the first --tenant is the default"
    );
    assert_eq!(
        alice["tenants"],
        json!([{"id": "beta", "name": "Beta", "role": "owner"}, {"id": "acme", "name": "Acme", "role": "member"}])
    );
    assert!(uuid::Uuid::parse_str(alice["id"].as_str().expect("id")).is_ok());
    assert!(
        !alice.to_string().contains("s3cret"),
        "no password in the output"
    );

    // The password is the first line without its line ending, stored as argon2id.
    let pool = db.connect();
    let mut conn = pool.conn().await.expect("conn");
    assert!(signs_in(&mut conn, "ALICE", "s3cret pass").await);
    assert!(!signs_in(&mut conn, "alice", "s3cret pass\r").await);

    let listed = keyframe(&db.url, &["--json", "user", "list"], None)
        .await
        .json();
    assert_eq!(listed, json!({ "users": [alice.clone()] }));

    let added = keyframe(
        &db.url,
        &[
            "--json",
            "user",
            "add-tenant",
            "alice",
            "gamma",
            "--role",
            "admin",
        ],
        None,
    )
    .await
    .json();
    assert_eq!(
        added["tenants"][2],
        json!({"id": "gamma", "name": "Gamma", "role": "admin"})
    );
    assert_eq!(added["default_tenant"], "beta");

    // Leaving the default tenant makes the oldest remaining membership the default.
    let removed = keyframe(
        &db.url,
        &["--json", "user", "remove-tenant", "alice", "beta"],
        None,
    )
    .await
    .json();
    assert_eq!(
        ids(&json!({"t": removed["tenants"]}), "t", "id"),
        ["acme", "gamma"]
    );
    assert_eq!(removed["default_tenant"], "acme");

    let disabled = keyframe(&db.url, &["--json", "user", "disable", "alice"], None)
        .await
        .json();
    assert_eq!(disabled["disabled"], true);
    assert!(
        !signs_in(&mut conn, "alice", "s3cret pass").await,
        "a disabled user does not sign in"
    );
    let enabled = keyframe(&db.url, &["--json", "user", "enable", "alice"], None)
        .await
        .json();
    assert_eq!(enabled["disabled"], false);

    let changed = keyframe(
        &db.url,
        &[
            "--json",
            "user",
            "set-password",
            "alice",
            "--password-stdin",
        ],
        Some("new one\n"),
    )
    .await
    .json();
    assert_eq!(changed["id"], alice["id"]);
    assert!(signs_in(&mut conn, "alice", "new one").await);
    assert!(!signs_in(&mut conn, "alice", "s3cret pass").await);

    // A user without tenants is allowed (an operator may add them later).
    let bob = keyframe(
        &db.url,
        &["--json", "user", "create", "bob", "--password-stdin"],
        Some("pw"),
    )
    .await
    .json();
    assert_eq!(bob["tenants"], json!([]));
    assert_eq!(bob["default_tenant"], Value::Null);
    let added = keyframe(
        &db.url,
        &["--json", "user", "add-tenant", "bob", "acme"],
        None,
    )
    .await
    .json();
    assert_eq!(
        added["default_tenant"], "acme",
        "the first membership becomes the default"
    );
    assert_eq!(added["tenants"][0]["role"], "member");

    let human = keyframe(&db.url, &["user", "list"], None).await;
    assert!(
        human
            .stdout
            .lines()
            .next()
            .expect("header")
            .starts_with("USERNAME  ID"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("acme:member*, gamma:admin"),
        "{}",
        human.stdout
    );
}

async fn clients_round_trip(backend: Backend) {
    let db = TestDb::new(backend);
    let web = keyframe(
        &db.url,
        &[
            "--json",
            "client",
            "create",
            "--name",
            "Web App",
            "--redirect-uri",
            "https://app.example/cb",
            "--redirect-uri",
            "http://127.0.0.1:9000/cb",
            "--scope",
            "video:read",
            "--scope",
            "video:write",
        ],
        None,
    )
    .await
    .json();
    let secret = web["client_secret"]
        .as_str()
        .expect("a confidential client gets a secret")
        .to_owned();
    assert!(
        secret.starts_with("kf_cs_") && secret.len() >= 6 + 43,
        "{secret}"
    );
    assert_eq!(web["public"], false);
    assert_eq!(
        web["grant_types"],
        json!(["authorization_code", "refresh_token"]),
        "default grants"
    );
    assert_eq!(web["scopes"], json!(["video:read", "video:write"]));
    assert_eq!(web["pkce"], "required");
    assert_eq!(
        web["redirect_uris"],
        json!(["https://app.example/cb", "http://127.0.0.1:9000/cb"])
    );

    let spa = keyframe(
        &db.url,
        &[
            "client",
            "create",
            "--json",
            "--name",
            "SPA",
            "--public",
            "--redirect-uri",
            "https://spa.example/",
        ],
        None,
    )
    .await
    .json();
    assert_eq!(spa["public"], true);
    assert!(
        spa.get("client_secret").is_none(),
        "a public client has no secret"
    );

    let legacy = keyframe(
        &db.url,
        &[
            "--json",
            "client",
            "create",
            "--name",
            "Legacy",
            "--grant-type",
            "password",
            "--grant-type",
            "refresh_token",
            "--pkce",
            "optional",
        ],
        None,
    )
    .await
    .json();
    assert_eq!(legacy["grant_types"], json!(["password", "refresh_token"]));
    assert_eq!(legacy["pkce"], "optional");

    let listed = keyframe(&db.url, &["--json", "client", "list"], None)
        .await
        .json();
    // Listed by name.
    assert_eq!(
        ids(&listed, "clients", "client_id"),
        [&legacy["client_id"], &spa["client_id"], &web["client_id"]]
            .map(|v| v.as_str().expect("id").to_owned())
    );
    assert!(
        !listed.to_string().contains("kf_cs_"),
        "a list never shows a secret"
    );
    let mut without_secret = web.clone();
    without_secret
        .as_object_mut()
        .expect("object")
        .remove("client_secret");
    assert_eq!(listed["clients"][2], without_secret);

    // Only the digest is stored.
    let pool = db.connect();
    let mut conn = pool.db().conn().expect("conn");
    use diesel::prelude::*;
    use keyframe::db::schema::clients;
    let stored: Option<String> = clients::table
        .find(web["client_id"].as_str().expect("id"))
        .select(clients::secret_hash)
        .first(&mut conn)
        .expect("row");
    let stored = stored.expect("confidential clients have a digest");
    assert_ne!(stored, secret);
    assert!(keyframe::secrets::matches_digest(&secret, &stored));
    if backend == Backend::Sqlite {
        drop(conn);
        drop(pool);
        for file in ["", "-wal"] {
            let bytes = std::fs::read(format!("{}{file}", db.url)).unwrap_or_default();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "secret found in the database file"
            );
        }
    }

    let human = keyframe(
        &db.url,
        &[
            "client",
            "create",
            "--name",
            "Human",
            "--grant-type",
            "password",
        ],
        None,
    )
    .await;
    assert_eq!(human.code, 0);
    assert!(
        human.stdout.contains("client_secret: kf_cs_"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("shown once"), "{}", human.stdout);

    let deleted = keyframe(
        &db.url,
        &[
            "--json",
            "client",
            "delete",
            spa["client_id"].as_str().expect("id"),
        ],
        None,
    )
    .await
    .json();
    assert_eq!(
        deleted,
        json!({ "client_id": spa["client_id"], "deleted": true })
    );
    let listed = keyframe(&db.url, &["--json", "client", "list"], None)
        .await
        .json();
    assert_eq!(listed["clients"].as_array().expect("clients").len(), 3);
    assert!(!ids(&listed, "clients", "client_id")
        .contains(&spa["client_id"].as_str().expect("id").to_owned()));
    let again = keyframe(
        &db.url,
        &[
            "--json",
            "client",
            "delete",
            spa["client_id"].as_str().expect("id"),
        ],
        None,
    )
    .await;
    assert!(again.refused().contains("unknown client"));
}

/// Every refusal: exit 1, a JSON error naming the problem, and nothing written.
async fn bad_input_is_refused_and_writes_nothing(backend: Backend) {
    let w = World::builder(backend)
        .tenant("acme", "Acme")
        .user("alice", "pw", &["acme"])
        .client(ClientSpec::confidential("App").redirect_uris(&["https://a.example/cb"]))
        .build()
        .await;
    let url = &w.app.db_url;

    let snapshot = || async {
        let mut all = Vec::new();
        for noun in ["tenant", "user", "client"] {
            all.push(keyframe(url, &["--json", noun, "list"], None).await.json());
        }
        all
    };
    let before = snapshot().await;

    let words = |line: &'static str| line.split(' ').collect::<Vec<_>>();
    // `user create carol` with these --tenant values, and `client create --name X` with more.
    let carol = |tenants: &[&'static str]| {
        let mut args = vec!["user", "create", "carol", "--password-stdin"];
        tenants.iter().for_each(|t| args.extend(["--tenant", t]));
        args
    };
    let client_x = |more: &[&'static str]| {
        let mut args = vec!["client", "create", "--name", "X"];
        args.extend_from_slice(more);
        args
    };
    let app_uri = |more: &[&'static str]| {
        let mut args = vec!["--redirect-uri", "https://a.example/"];
        args.extend_from_slice(more);
        client_x(&args)
    };
    let cases: Vec<(Vec<&str>, Option<&str>, &str)> = vec![
        (
            words("tenant create acme --name Again"),
            None,
            "already exists",
        ),
        (
            words("tenant create Not-A-Slug --name X"),
            None,
            "invalid tenant id",
        ),
        (
            words("tenant create under_score --name X"),
            None,
            "invalid tenant id",
        ),
        (
            vec!["tenant", "create", "new", "--name", "  "],
            None,
            "name is empty",
        ),
        (
            words("user create ALICE --password-stdin"),
            Some("pw"),
            "already exists",
        ),
        (carol(&["acme", "nope"]), Some("pw"), "unknown tenant nope"),
        (carol(&["acme:boss"]), Some("pw"), "unknown role"),
        (carol(&["acme", "acme:admin"]), Some("pw"), "named twice"),
        (carol(&["acme"]), Some("\n"), "password is empty"),
        (carol(&["acme"]), None, "password is empty"),
        (
            vec!["user", "create", "two words", "--password-stdin"],
            Some("pw"),
            "invalid username",
        ),
        (
            words("user add-tenant alice acme"),
            None,
            "already a member",
        ),
        (words("user add-tenant alice nope"), None, "unknown tenant"),
        (
            words("user add-tenant alice acme --role root"),
            None,
            "unknown role",
        ),
        (words("user add-tenant nobody acme"), None, "unknown user"),
        (
            words("user remove-tenant alice other"),
            None,
            "not a member",
        ),
        (words("user disable nobody"), None, "unknown user"),
        (
            words("user set-password alice --password-stdin"),
            Some(""),
            "password is empty",
        ),
        (
            client_x(&["--grant-type", "implicit"]),
            None,
            "unknown grant type",
        ),
        (
            client_x(&["--redirect-uri", "/relative"]),
            None,
            "not an absolute URI",
        ),
        (
            client_x(&["--redirect-uri", "https://a.example/cb#frag"]),
            None,
            "fragment",
        ),
        (client_x(&[]), None, "needs at least one --redirect-uri"),
        (
            app_uri(&["--public", "--pkce", "optional"]),
            None,
            "public client must use PKCE",
        ),
        (app_uri(&["--pkce", "sometimes"]), None, "unknown PKCE mode"),
        (app_uri(&["--scope", "two words"]), None, "invalid scope"),
        (
            vec![
                "client",
                "create",
                "--name",
                "",
                "--redirect-uri",
                "https://a.example/",
            ],
            None,
            "name is empty",
        ),
    ];
    for (args, stdin, expected) in &cases {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let run = keyframe(url, &full, *stdin).await;
        let message = run.refused();
        assert!(
            message.contains(expected),
            "{args:?}: {message:?} should mention {expected:?}"
        );
        let human = keyframe(url, args, *stdin).await;
        assert_eq!(human.code, 1, "{args:?}: {human:?}");
        assert!(
            human.stderr.starts_with("error: ") && human.stderr.trim().lines().count() == 1,
            "{human:?}"
        );
    }
    assert_eq!(
        snapshot().await,
        before,
        "a refused command changed something"
    );
}

/// SQLite in WAL mode with a busy timeout and write transactions that take the lock up front:
/// concurrent writers wait their turn instead of failing.
async fn concurrent_user_creates_all_succeed(backend: Backend) {
    let db = TestDb::new(backend);
    keyframe(
        &db.url,
        &["--json", "tenant", "create", "acme", "--name", "Acme"],
        None,
    )
    .await
    .json();
    let runs = futures_join_all((0..20).map(|i| {
        let url = db.url.clone();
        async move {
            let name = format!("user{i}");
            keyframe(
                &url,
                &[
                    "--json",
                    "user",
                    "create",
                    &name,
                    "--password-stdin",
                    "--tenant",
                    "acme",
                ],
                Some("pw"),
            )
            .await
        }
    }))
    .await;
    for run in &runs {
        assert_eq!(run.json()["tenants"][0]["id"], "acme");
    }
    let listed = keyframe(&db.url, &["--json", "user", "list"], None)
        .await
        .json();
    assert_eq!(listed["users"].as_array().expect("users").len(), 20);
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

backend_tests!(
    tenants_round_trip,
    users_and_memberships_round_trip,
    clients_round_trip,
    bad_input_is_refused_and_writes_nothing,
    concurrent_user_creates_all_succeed,
);

#[test]
fn both_backends_have_the_same_migrations() {
    let (sqlite, postgres) = keyframe::db::migration_names();
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres);
}
