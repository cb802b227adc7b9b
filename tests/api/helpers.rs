//! The test harness: a fresh database per test on each backend, the real app on a random port,
//! and the real `keyframe` binary for CLI tests.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use diesel::{Connection, PgConnection, RunQueryDsl};
use keyframe::clock::Clock;
use keyframe::config::{parse_issuer, Config};
use keyframe::db::{DatabaseUrl, Db, DbOptions};
use keyframe::startup::{prepare_database, Application};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

pub const KEYFRAME: &str = env!("CARGO_BIN_EXE_keyframe");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the tests may create databases on. Without it the PostgreSQL half of
/// every test is skipped, loudly; in CI (`CI=true`) a missing PostgreSQL fails the run instead.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("KEYFRAME_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but KEYFRAME_TEST_POSTGRES_URL is not set: PostgreSQL tests must run in CI");
            }
            eprintln!(
                "\n!!! SKIPPED the PostgreSQL variant: set KEYFRAME_TEST_POSTGRES_URL \
                 (e.g. postgres://postgres@127.0.0.1:5432/test) to run it !!!\n"
            );
            None
        }
    }
}

/// A fresh, empty database that is removed when dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub fn new(backend: Backend) -> Option<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = dir.path().join("keyframe.db").display().to_string();
                Some(Self {
                    url,
                    _dir: Some(dir),
                    pg: None,
                })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url()?;
                let name = format!("kf_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn =
                    PgConnection::establish(&admin).expect("connect to the test PostgreSQL");
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .expect("create database");
                let mut url = url::Url::parse(&admin).expect("admin URL");
                url.set_path(&format!("/{name}"));
                Some(Self {
                    url: url.to_string(),
                    _dir: None,
                    pg: Some((admin, name)),
                })
            }
        }
    }

    /// The same database reached through another host and port (a proxy in front of it).
    pub fn url_via(&self, port: u16) -> String {
        let mut url = url::Url::parse(&self.url).expect("url");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(port)).expect("port");
        url.to_string()
    }

    /// A pool on this database, migrated, for checks that read storage directly.
    pub fn connect(&self) -> Db {
        prepare_database(&config(&self.url)).expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg {
            if let Ok(mut conn) = PgConnection::establish(admin) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn);
            }
        }
    }
}

pub fn config(database_url: &str) -> Config {
    Config {
        database_url: DatabaseUrl::parse(database_url).expect("database url"),
        listen: "127.0.0.1:0".into(),
        issuer: None,
        max_body_bytes: 64 * 1024,
        db_pool_size: 4,
        sqlite_max_log_bytes: keyframe::db::DbOptions::DEFAULT_SQLITE_MAX_LOG_BYTES,
        tokens: keyframe::config::TokenSettings::default(),
        vms_api: true,
        trusted_proxies: Vec::new(),
    }
}

/// The output of one `keyframe` process.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The one JSON object a successful `--json` command prints.
    pub fn json(&self) -> Value {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {self:?}"))
    }

    /// The refusal of a `--json` command: exit code 1, nothing on stdout, a JSON error on stderr.
    pub fn refused(&self) -> String {
        assert_eq!(self.code, 1, "expected a refusal: {self:?}");
        assert!(
            self.stdout.is_empty(),
            "a refusal printed to stdout: {self:?}"
        );
        let error: Value = serde_json::from_str(self.stderr.trim())
            .unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {self:?}"));
        error["error"].as_str().expect("error message").to_owned()
    }
}

/// Runs the real binary; `stdin` is written to its standard input.
pub async fn keyframe(database_url: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = tokio::process::Command::new(KEYFRAME)
        .args(args)
        .env("KEYFRAME_DATABASE_URL", database_url)
        .env_remove("KEYFRAME_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keyframe");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().await.expect("keyframe output");
    Run {
        code: out.status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            -out.status.signal().unwrap_or(1000)
        }),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The real application on a random port, on a fresh database.
pub struct TestApp {
    pub address: String,
    pub issuer: String,
    /// The database this instance (and the CLI) works on.
    pub db_url: String,
    /// The server's time: it stands still unless the test moves it (shared with twins).
    pub clock: Clock,
    /// Kept so that the database lives as long as the app (`None` for a twin).
    _db: Option<TestDb>,
    config: Config,
    pub http: reqwest::Client,
    server: JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    /// A second instance on the same database and clock, as when several Keyframes share one
    /// PostgreSQL.
    pub async fn spawn_twin(&self) -> Self {
        let mut cfg = self.config.clone();
        // Instances behind one load balancer share the public issuer.
        cfg.issuer = Some(self.issuer.clone());
        Self::start(cfg, None, self.db_url.clone(), self.clock.clone()).await
    }

    pub async fn spawn(backend: Backend) -> Option<Self> {
        let db = TestDb::new(backend)?;
        Some(Self::spawn_on(db, &|_| {}).await)
    }

    /// Starts the app on `db`, letting the test adjust the configuration first.
    pub async fn spawn_on(db: TestDb, adjust: &dyn Fn(&mut Config)) -> Self {
        let mut cfg = config(&db.url);
        adjust(&mut cfg);
        let url = db.url.clone();
        Self::start(cfg, Some(db), url, Clock::manual(keyframe::clock::now())).await
    }

    async fn start(cfg: Config, db: Option<TestDb>, db_url: String, clock: Clock) -> Self {
        let prepared = cfg.clone();
        let pool = tokio::task::spawn_blocking(move || prepare_database(&prepared))
            .await
            .expect("join")
            .expect("prepare database");
        let app = Application::build_with_clock(&cfg, pool, clock.clone()).expect("build app");
        let address = format!("http://127.0.0.1:{}", app.port());
        let issuer = app.issuer().to_owned();
        assert_eq!(parse_issuer(&issuer).ok().as_deref(), Some(issuer.as_str()));
        let server = tokio::spawn(async move {
            let _ = app.run_until_stopped().await;
        });
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self {
            address,
            issuer,
            db_url,
            clock,
            _db: db,
            config: cfg,
            http,
            server,
        }
    }
}

/// Runs a test body once per backend: `backend_tests!(name, ...)` makes `name::sqlite` and
/// `name::postgres` from `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::Backend;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if $crate::helpers::postgres_admin_url().is_some() {
                        super::$name(Backend::Postgres).await;
                    }
                }
            }
        )*
    };
}

/// A TCP proxy in front of PostgreSQL that a test can cut (every connection dropped, new ones
/// closed at once) and restore, without touching the shared server.
pub struct CuttableProxy {
    pub port: u16,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl CuttableProxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let open = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (flag, list) = (open.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let upstream = upstream.clone();
                list.lock().await.push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Self {
            port,
            open,
            connections,
            accept,
        }
    }

    pub async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for task in self.connections.lock().await.drain(..) {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// The OAuth 2.0 token service: set-up through the real CLI, requests as a client sends them.

/// A registered client: `secret` is `None` for a public one.
#[derive(Debug, Clone)]
pub struct TestClient {
    pub id: String,
    pub secret: Option<String>,
}

impl TestClient {
    /// How this client authenticates by default: HTTP Basic when confidential, its `client_id`
    /// in the body when public.
    pub fn auth(&self) -> Auth<'_> {
        match &self.secret {
            Some(secret) => Auth::Basic(&self.id, secret),
            None => Auth::Id(&self.id),
        }
    }

    /// `client_secret_post`: both credentials in the body.
    pub fn post(&self) -> Auth<'_> {
        Auth::Post(
            &self.id,
            self.secret.as_deref().expect("a confidential client"),
        )
    }
}

/// Client authentication on a form request.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// No credentials at all.
    Nothing,
    /// `client_secret_basic` (reqwest encodes id and secret as given; ours are URL-safe).
    Basic(&'a str, &'a str),
    /// `client_secret_post`.
    Post(&'a str, &'a str),
    /// `none`: only `client_id` in the body (public clients).
    Id(&'a str),
}

/// One HTTP answer: status, headers and the body (JSON when it is JSON, else `Null`).
#[derive(Debug)]
pub struct Answer {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Answer {
    pub async fn from(response: reqwest::Response) -> Self {
        let (status, headers) = (response.status(), response.headers().clone());
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            body,
        }
    }

    /// A successful token response.
    pub fn ok(self) -> Self {
        assert_eq!(
            self.status,
            reqwest::StatusCode::OK,
            "expected 200: {}",
            self.text
        );
        self
    }

    pub fn access_token(&self) -> String {
        self.body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {} {}", self.status, self.text))
            .to_owned()
    }

    pub fn refresh_token(&self) -> String {
        self.body["refresh_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no refresh_token: {} {}", self.status, self.text))
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// An RFC 6749 §5.2 error: this status and code, a non-empty description, nothing issued,
    /// and `Cache-Control: no-store`; 401 answers name a scheme in `WWW-Authenticate`.
    #[track_caller]
    pub fn assert_error(&self, status: reqwest::StatusCode, error: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.body["error"], error, "{}", self.text);
        assert!(
            self.body["error_description"]
                .as_str()
                .is_some_and(|d| !d.trim().is_empty()),
            "error_description must be a non-empty string: {}",
            self.text
        );
        assert!(
            self.body.get("access_token").is_none() && self.body.get("refresh_token").is_none(),
            "an error issued tokens: {}",
            self.text
        );
        assert_eq!(
            self.header("cache-control"),
            Some("no-store"),
            "{status} {error}"
        );
        if status == reqwest::StatusCode::UNAUTHORIZED {
            assert!(
                self.header("www-authenticate")
                    .is_some_and(|v| !v.trim().is_empty()),
                "a 401 without WWW-Authenticate: {:?}",
                self.headers
            );
        }
    }

    /// A 400 with this error code (see [`Answer::assert_error`]).
    #[track_caller]
    pub fn assert_400(&self, error: &str) {
        self.assert_error(reqwest::StatusCode::BAD_REQUEST, error);
    }

    pub fn description(&self) -> &str {
        self.body["error_description"].as_str().unwrap_or("")
    }
}

/// Space-separated scopes as a sorted list (the order of a scope string carries no meaning).
pub fn scopes(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = value
        .as_str()
        .unwrap_or_else(|| panic!("scope is not a string: {value}"))
        .split(' ')
        .map(str::to_owned)
        .collect();
    list.sort();
    list
}

impl TestApp {
    /// The real CLI on this app's database.
    pub async fn cli(&self, args: &[&str], stdin: Option<&str>) -> Run {
        keyframe(&self.db_url, args, stdin).await
    }

    pub async fn create_tenant(&self, id: &str, name: &str) {
        self.cli(&["--json", "tenant", "create", id, "--name", name], None)
            .await
            .json();
    }

    /// Creates a user with these `--tenant` values (the first is the default); returns its id.
    pub async fn create_user(&self, username: &str, password: &str, tenants: &[&str]) -> String {
        let mut args = vec!["--json", "user", "create", username, "--password-stdin"];
        for tenant in tenants {
            args.extend(["--tenant", tenant]);
        }
        let user = self.cli(&args, Some(&format!("{password}\n"))).await.json();
        user["id"].as_str().expect("user id").to_owned()
    }

    pub async fn create_client(
        &self,
        name: &str,
        public: bool,
        grants: &[&str],
        scopes: &[&str],
    ) -> TestClient {
        let mut args = vec!["--json", "client", "create", "--name", name];
        if public {
            args.push("--public");
        }
        for grant in grants {
            args.extend(["--grant-type", grant]);
        }
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let client = self.cli(&args, None).await.json();
        let secret = client["client_secret"].as_str().map(str::to_owned);
        assert_eq!(secret.is_none(), public, "{client}");
        TestClient {
            id: client["client_id"].as_str().expect("client_id").to_owned(),
            secret,
        }
    }

    /// `POST path` with a form body and this client authentication.
    pub async fn post_form(&self, path: &str, auth: Auth<'_>, fields: &[(&str, &str)]) -> Answer {
        let mut fields = fields.to_vec();
        let mut request = self.http.post(format!("{}{path}", self.address));
        match auth {
            Auth::Nothing => {}
            Auth::Basic(id, secret) => request = request.basic_auth(id, Some(secret)),
            Auth::Post(id, secret) => fields.extend([("client_id", id), ("client_secret", secret)]),
            Auth::Id(id) => fields.push(("client_id", id)),
        }
        Answer::from(request.form(&fields).send().await.expect("request")).await
    }

    pub async fn password_grant(
        &self,
        client: &TestClient,
        username: &str,
        password: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut fields = vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ];
        fields.extend_from_slice(extra);
        self.post_form("/oauth/token", client.auth(), &fields).await
    }

    pub async fn refresh(
        &self,
        client: &TestClient,
        refresh_token: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut fields = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        fields.extend_from_slice(extra);
        self.post_form("/oauth/token", client.auth(), &fields).await
    }

    /// The introspection answer's body (asserting the call itself was a 200).
    pub async fn introspect(&self, client: &TestClient, token: &str) -> Value {
        let answer = self
            .post_form("/oauth/introspect", client.auth(), &[("token", token)])
            .await;
        assert_eq!(
            answer.status,
            reqwest::StatusCode::OK,
            "introspection: {}",
            answer.text
        );
        answer.body
    }

    pub async fn revoke(&self, client: &TestClient, token: &str) -> Answer {
        self.post_form("/oauth/revoke", client.auth(), &[("token", token)])
            .await
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), reqwest::StatusCode::OK, "GET {path}");
        response.json().await.expect("a JSON document")
    }

    pub async fn jwks(&self) -> Value {
        self.get_json("/oauth/jwks").await
    }

    /// Verifies an access token as a resource server does: with the served JWKS alone, for
    /// this issuer and `audience`. Returns the claims.
    pub async fn verify_access_token(&self, jwt: &str, audience: &str) -> Value {
        verify_with(&self.jwks().await, jwt, &self.issuer, audience)
            .unwrap_or_else(|e| panic!("the access token does not verify: {e}"))
    }

    /// Moves every recorded sign-in failure `seconds` into the past.
    /// Rows in the token tables (families, refresh tokens, revoked access tokens).
    pub fn token_rows(&self) -> i64 {
        use diesel::prelude::*;
        use keyframe::db::schema::{refresh_tokens, revoked_access_tokens, token_families};
        let db = Db::connect(
            &DatabaseUrl::parse(&self.db_url).expect("url"),
            &DbOptions::pool(1),
        )
        .expect("db");
        let mut conn = db.conn().expect("conn");
        let families: i64 = token_families::table
            .count()
            .get_result(&mut conn)
            .expect("count");
        let refresh: i64 = refresh_tokens::table
            .count()
            .get_result(&mut conn)
            .expect("count");
        let revoked: i64 = revoked_access_tokens::table
            .count()
            .get_result(&mut conn)
            .expect("count");
        families + refresh + revoked
    }
}

/// Checks an access token against a JWKS document: RFC 9068 header (`typ` `at+jwt`, ES256, a
/// `kid` the JWKS lists), signature, `iss`, `aud` and `exp`.
pub fn verify_with(jwks: &Value, jwt: &str, issuer: &str, audience: &str) -> Result<Value, String> {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let header = decode_header(jwt).map_err(|e| format!("header: {e}"))?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(format!("typ is {:?}, not at+jwt", header.typ));
    }
    if header.alg != Algorithm::ES256 {
        return Err(format!("alg is {:?}, not ES256", header.alg));
    }
    let kid = header.kid.ok_or("no kid in the header")?;
    let key = jwks["keys"]
        .as_array()
        .ok_or("the JWKS has no keys array")?
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or_else(|| format!("kid {kid} is not in the JWKS {jwks}"))?;
    let (Some(x), Some(y)) = (key["x"].as_str(), key["y"].as_str()) else {
        return Err(format!("the JWK lacks x or y: {key}"));
    };
    let decoding = DecodingKey::from_ec_components(x, y).map_err(|e| format!("JWK: {e}"))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 0;
    decode::<Value>(jwt, &decoding, &validation)
        .map(|data| data.claims)
        .map_err(|e| format!("{e}"))
}

/// The common token-service world: tenants `acme` ("Acme Video", alice's default), `beta`
/// ("Beta Live", alice is a member) and `gamma` (not hers); a confidential client with the
/// password and refresh grants and the scopes `read` and `write`.
pub struct World {
    pub app: TestApp,
    pub client: TestClient,
    pub alice_id: String,
}

pub const ALICE_PASSWORD: &str = "correct horse battery staple";

impl World {
    pub async fn new(backend: Backend, adjust: &dyn Fn(&mut Config)) -> Self {
        let db = TestDb::new(backend).expect("database");
        let app = TestApp::spawn_on(db, adjust).await;
        app.create_tenant("acme", "Acme Video").await;
        app.create_tenant("beta", "Beta Live").await;
        app.create_tenant("gamma", "Gamma").await;
        let alice_id = app
            .create_user("alice", ALICE_PASSWORD, &["acme:owner", "beta"])
            .await;
        let client = app
            .create_client(
                "Backend",
                false,
                &["password", "refresh_token"],
                &["read", "write"],
            )
            .await;
        Self {
            app,
            client,
            alice_id,
        }
    }

    /// alice signs in with the password grant at the world's client.
    pub async fn password(&self, extra: &[(&str, &str)]) -> Answer {
        self.app
            .password_grant(&self.client, "alice", ALICE_PASSWORD, extra)
            .await
    }

    /// A successful sign-in.
    pub async fn sign_in(&self, extra: &[(&str, &str)]) -> Answer {
        self.password(extra).await.ok()
    }

    pub async fn refresh(&self, refresh_token: &str, extra: &[(&str, &str)]) -> Answer {
        self.app.refresh(&self.client, refresh_token, extra).await
    }

    pub async fn introspect(&self, token: &str) -> Value {
        self.app.introspect(&self.client, token).await
    }

    /// Whether introspection by the world's client calls the token active; an inactive answer
    /// must be exactly `{"active": false}`.
    pub async fn active(&self, token: &str) -> bool {
        let answer = self.introspect(token).await;
        match answer["active"].as_bool() {
            Some(true) => true,
            Some(false) => {
                assert_eq!(answer, serde_json::json!({"active": false}));
                false
            }
            None => panic!("introspection without active: {answer}"),
        }
    }

    pub async fn verify(&self, jwt: &str) -> Value {
        self.app.verify_access_token(jwt, &self.app.issuer).await
    }

    pub async fn cli(&self, args: &[&str]) -> Value {
        self.app.cli(args, None).await.json()
    }
}
