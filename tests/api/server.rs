use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::backend_tests;
use crate::helpers::{
    keyframe, postgres_admin_url, Answer, Backend, CuttableProxy, TestApp, TestDb, World, KEYFRAME,
};

async fn health_metadata_and_plain_errors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_eq!(app.get_json("/healthz").await, json!({ "status": "ok" }));

    let meta = app
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(meta["issuer"], app.issuer.as_str());
    assert_eq!(
        app.issuer, app.address,
        "the default issuer is http:// + the bound address"
    );

    let missing = app.get("/no/such/thing").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["error"], "not_found", "{}", missing.text);
}

async fn oversized_bodies_get_413(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let big = vec![b'a'; 64 * 1024 + 1];
    for path in ["/healthz", "/anything"] {
        let response = app
            .http
            .post(format!("{}{path}", app.address))
            .body(big.clone())
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        let body: Value = response.json().await.expect("json body");
        assert_eq!(body["error"], "invalid_request");
        assert!(
            body["error_description"]
                .as_str()
                .expect("description")
                .contains("65536"),
            "{body}"
        );
    }
    // At the limit is not over it.
    let fits = app
        .http
        .post(format!("{}/anything", app.address))
        .body(vec![b'a'; 64 * 1024])
        .send()
        .await
        .expect("post");
    assert_eq!(fits.status(), StatusCode::NOT_FOUND);
}

/// `keyframe serve --demo` as a process: the startup object, the demo data, request logs
/// without query strings, and a graceful stop on SIGTERM.
async fn serve_demo_logs_and_graceful_shutdown(backend: Backend) {
    let db = TestDb::new(backend);
    let mut child = tokio::process::Command::new(KEYFRAME)
        .args(["--json", "serve", "--demo", "--listen", "127.0.0.1:0"])
        .env("KEYFRAME_DATABASE_URL", &db.url)
        .env("KEYFRAME_LOG", "info")
        .env_remove("MALLOC_ARENA_MAX")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start serve");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut first))
        .await
        .expect("startup line")
        .expect("read");
    let started: Value = serde_json::from_str(&first).expect("one JSON object");
    assert_eq!(started["status"], "serving");
    let port = started["port"].as_u64().expect("port");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        malloc_arena_max(&child),
        Some(cores.min(2).to_string()),
        "serve limits malloc arenas to the usable cores, at most two"
    );
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(started["issuer"], base.as_str());
    let demo = &started["demo"];
    assert_eq!(demo["tenant"], "demo");
    assert_eq!(demo["username"], "demo");
    let password = demo["password"].as_str().expect("password");
    let secret = demo["client_secret"].as_str().expect("secret");
    let command = demo["token_command"].as_str().expect("command");
    for part in [
        password,
        secret,
        demo["client_id"].as_str().expect("id"),
        "/oauth/token",
        "grant_type=password",
    ] {
        assert!(command.contains(part), "{command} lacks {part}");
    }

    let http = reqwest::Client::new();
    let health = http
        .get(format!("{base}/healthz?code=query-secret-value"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);

    // SIGTERM: a graceful stop with exit code 0.
    let pid = child.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("stops")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
    let mut logs = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut logs)
        .await
        .expect("logs");
    let line = logs
        .lines()
        .find(|l| l.contains("path=/healthz"))
        .unwrap_or_else(|| panic!("no request line in {logs}"));
    for field in ["request_id=", "method=GET", "status=200", "latency_ms="] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    for secret_text in ["query-secret-value", password, secret] {
        assert!(
            !logs.contains(secret_text),
            "a secret reached the logs: {logs}"
        );
    }

    // The demo data is real, and a second --demo on a non-empty database creates nothing.
    let users = keyframe(&db.url, &["--json", "user", "list"], None)
        .await
        .json();
    assert_eq!(users["users"][0]["username"], "demo");
    assert_eq!(
        users["users"][0]["tenants"],
        json!([{"id": "demo", "name": "Demo VideoManager", "role": "owner"}])
    );
    let pool = db.connect();
    let mut conn = pool.conn().await.expect("conn");
    assert!(keyframe::users::check_password(&mut conn, "demo", password)
        .await
        .expect("check")
        .is_some());
    let clients = keyframe(&db.url, &["--json", "client", "list"], None)
        .await
        .json();
    assert_eq!(
        clients["clients"][0]["grant_types"],
        json!(["password", "refresh_token"])
    );

    // On one core (the benchmark's setting), one arena.
    let mut again = tokio::process::Command::new("taskset")
        .args(["-c", "0", KEYFRAME])
        .args(["--json", "serve", "--demo", "--listen", "127.0.0.1:0"])
        .env("KEYFRAME_DATABASE_URL", &db.url)
        .env_remove("MALLOC_ARENA_MAX")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start serve");
    let mut line = String::new();
    let mut out = BufReader::new(again.stdout.take().expect("stdout"));
    tokio::time::timeout(Duration::from_secs(30), out.read_line(&mut line))
        .await
        .expect("startup")
        .expect("read");
    let started: Value = serde_json::from_str(&line).expect("json");
    assert_eq!(started["demo"], Value::Null);
    assert_eq!(malloc_arena_max(&again), Some("1".to_owned()));
    again.kill().await.expect("kill");
}

backend_tests!(
    health_metadata_and_plain_errors,
    oversized_bodies_get_413,
    serve_demo_logs_and_graceful_shutdown
);

/// `MALLOC_ARENA_MAX` in the environment a running process was (re-)executed with.
fn malloc_arena_max(child: &tokio::process::Child) -> Option<String> {
    let pid = child.id().expect("running");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"MALLOC_ARENA_MAX="))
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

async fn status_of(app: &TestApp) -> StatusCode {
    app.get("/healthz").await.status
}

async fn wait_for(app: &TestApp, wanted: StatusCode) {
    for _ in 0..100 {
        if status_of(app).await == wanted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/healthz never answered {wanted}");
}

/// PostgreSQL only: a TCP proxy between Keyframe and the shared server is cut and restored,
/// so the shared PostgreSQL is never disturbed. (A SQLite file cannot go away under an open
/// connection.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KEYFRAME_TEST_POSTGRES_URL"]
async fn healthz_follows_the_database_without_a_restart() {
    let admin = postgres_admin_url();
    let db = TestDb::new(Backend::Postgres);
    let upstream = url::Url::parse(&admin).expect("url");
    let upstream = format!(
        "{}:{}",
        upstream.host_str().expect("host"),
        upstream.port().unwrap_or(5432)
    );
    let proxy = CuttableProxy::start(upstream).await;
    let via_proxy = keyframe::db::DatabaseUrl::parse(&db.url_via(proxy.port)).expect("url");
    let app = TestApp::spawn_on(db, &|cfg| cfg.database_url = via_proxy.clone()).await;
    assert_eq!(status_of(&app).await, StatusCode::OK);

    proxy.cut().await;
    wait_for(&app, StatusCode::SERVICE_UNAVAILABLE).await;
    let unavailable = app.get("/healthz").await;
    assert_eq!(
        unavailable.body["status"], "unavailable",
        "{}",
        unavailable.text
    );

    proxy.restore();
    wait_for(&app, StatusCode::OK).await;
}

/// PostgreSQL closes every connection of Keyframe's pool (`pg_terminate_backend`, as a restart
/// or an idle timeout would) while refreshes run. Only a request whose statement was in flight
/// on a killed connection may fail, and then with 503 `temporarily_unavailable`; the pool
/// replaces the connections and everything after succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KEYFRAME_TEST_POSTGRES_URL"]
async fn killed_database_connections_are_replaced_under_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const WORKERS: usize = 8;
    let w = World::token_service(Backend::Postgres).build().await;
    let mut chains = Vec::new();
    for _ in 0..WORKERS {
        chains.push(w.sign_in(&[]).await.refresh_token());
    }
    let killed_flag = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for mut token in chains {
        let (app, client) = (w.app.http.clone(), w.client().clone());
        let address = w.app.address.clone();
        let (killed_flag, stop) = (killed_flag.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            // (answered after the kill, status, body) for every request.
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let after_kill = killed_flag.load(Ordering::SeqCst);
                let answer = Answer::send(
                    app.post(format!("{address}/oauth/token"))
                        .basic_auth(&client.id, client.secret.as_deref())
                        .form(&[
                            ("grant_type", "refresh_token"),
                            ("refresh_token", token.as_str()),
                        ]),
                )
                .await;
                let ok = answer.status == StatusCode::OK;
                if ok {
                    token = answer.refresh_token();
                }
                seen.push((after_kill, answer.status, answer.body));
                if !ok {
                    // The failed rotation may or may not have committed: this chain ends.
                    break;
                }
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let db_name = url::Url::parse(&w.app.db_url)
        .expect("url")
        .path()
        .trim_start_matches('/')
        .to_owned();
    let admin = postgres_admin_url();
    let killed = tokio::task::spawn_blocking(move || {
        use diesel::{Connection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct Killed {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            killed: i64,
        }
        let mut conn = diesel::PgConnection::establish(&admin).expect("admin connection");
        diesel::sql_query(
            "SELECT count(pg_terminate_backend(pid)) AS killed FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind::<diesel::sql_types::Text, _>(db_name)
        .get_result::<Killed>(&mut conn)
        .expect("terminate")
        .killed
    })
    .await
    .expect("join");
    killed_flag.store(true, Ordering::SeqCst);
    assert!(killed >= 1, "Keyframe held no connection to kill");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);

    let mut failed = Vec::new();
    let mut after = 0;
    for task in tasks {
        for (after_kill, status, body) in task.await.expect("task") {
            if status != StatusCode::OK {
                failed.push((status, body));
            } else if after_kill {
                after += 1;
            }
        }
    }
    assert!(
        failed.len() as i64 <= killed,
        "{} failures for {killed} killed connections: {failed:?}",
        failed.len()
    );
    for (status, body) in &failed {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    }
    assert!(
        after >= WORKERS,
        "refreshes go on after the kill: {after} succeeded"
    );
    // And a fresh sign-in and refresh work on the replaced connections.
    let pair = w.sign_in(&[]).await.ok();
    w.refresh(&pair.refresh_token(), &[]).await.ok();
}

/// The asynchronous driver honours the URL's TLS settings as libpq does: `sslmode=require`
/// encrypts every connection of the pool; `verify-full` checks the certificate's chain and
/// host name against `sslrootcert`, `verify-ca` only its chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs KEYFRAME_TEST_POSTGRES_URL"]
async fn postgres_connections_use_tls_as_the_url_says() {
    use diesel::{Connection, RunQueryDsl};
    use keyframe::db::postgres;

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    let admin = postgres_admin_url();
    let w = World::token_service(Backend::Postgres)
        .config(|cfg| {
            if let keyframe::db::DatabaseUrl::Postgres { url } = &mut cfg.database_url {
                url.push_str("?sslmode=require");
            }
        })
        .build()
        .await;
    let pair = w.sign_in(&[]).await.ok();
    w.refresh(&pair.refresh_token(), &[]).await.ok();
    let db_url = w.app.db_url.clone();
    let with = |query: &str| {
        let mut url = url::Url::parse(&db_url).expect("url");
        url.set_query(Some(query));
        url.to_string()
    };
    let db_name = url::Url::parse(&db_url).expect("url").path()[1..].to_owned();
    let (plain, cert) = tokio::task::spawn_blocking(move || {
        let mut conn = diesel::PgConnection::establish(&admin).expect("admin connection");
        let plain = diesel::sql_query(
            "SELECT count(*)::text AS value FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE datname = $1 AND NOT ssl",
        )
        .bind::<diesel::sql_types::Text, _>(db_name)
        .get_result::<Row>(&mut conn)
        .expect("pg_stat_ssl")
        .value;
        let cert = diesel::sql_query(
            "SELECT setting AS value FROM pg_settings WHERE name = 'ssl_cert_file'",
        )
        .get_result::<Row>(&mut conn)
        .expect("ssl_cert_file")
        .value;
        (plain, cert)
    })
    .await
    .expect("join");
    assert_eq!(
        plain, "0",
        "every connection of Keyframe's database is encrypted"
    );

    // The server's certificate names localhost: verify-full accepts it there, refuses it at
    // 127.0.0.1; verify-ca accepts it at either.
    let timeout = Duration::from_secs(5);
    let at = |host: &str, mode: &str| {
        let mut url = url::Url::parse(&db_url).expect("url");
        url.set_host(Some(host)).expect("host");
        url.set_query(Some(&format!("sslmode={mode}&sslrootcert={cert}")));
        url.to_string()
    };
    for (host, mode, works) in [
        ("localhost", "verify-full", true),
        ("127.0.0.1", "verify-full", false),
        ("127.0.0.1", "verify-ca", true),
    ] {
        let connector = postgres::Connector::new(&at(host, mode)).expect("connector");
        let pool = postgres::pool(&connector, 1, timeout).expect("pool");
        let checked = postgres::checkout(&pool).await;
        assert_eq!(
            checked.is_ok(),
            works,
            "{mode} at {host}: {:?}",
            checked.err()
        );
    }
    let unreadable =
        postgres::Connector::new(&with("sslmode=verify-full&sslrootcert=/nonexistent.pem"));
    assert!(
        matches!(unreadable, Err(keyframe::error::Error::Config(_))),
        "an unreadable root certificate is refused at start"
    );
}
