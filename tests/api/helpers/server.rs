//! The server side of a test: a fresh database per test on each backend, the real application
//! on a random port with a clock that stands still, and a cuttable proxy in front of PostgreSQL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use diesel::{Connection, PgConnection, QueryDsl, RunQueryDsl};
use keyframe::clock::Clock;
use keyframe::config::{parse_issuer, Config};
use keyframe::db::{DatabaseUrl, Db, DbOptions};
use keyframe::startup::{prepare_database, Application};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server the tests may create databases on. The PostgreSQL variants are
/// `#[ignore]`d; one that is asked to run without this variable fails: a variant that did not
/// run must not count as passed.
pub fn postgres_admin_url() -> String {
    match std::env::var("KEYFRAME_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "KEYFRAME_TEST_POSTGRES_URL is not set: a PostgreSQL variant needs a server on which \
             it may create and drop databases (e.g. postgres://postgres@127.0.0.1:5432/test)"
        ),
    }
}

/// A fresh, empty database that is removed when dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = dir.path().join("keyframe.db").display().to_string();
                Self {
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("kf_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn =
                    PgConnection::establish(&admin).expect("connect to the test PostgreSQL");
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .expect("create database");
                let mut url = url::Url::parse(&admin).expect("admin URL");
                url.set_path(&format!("/{name}"));
                Self {
                    url: url.to_string(),
                    _dir: None,
                    pg: Some((admin, name)),
                }
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
    pub fn connect(&self) -> keyframe::db::Store {
        prepare_database(&config(&self.url)).expect("connect to the test database")
    }

    /// One value read directly from storage (what a column really holds).
    pub fn read<T>(
        &self,
        query: impl FnOnce(&mut keyframe::db::SyncConn) -> diesel::QueryResult<T>,
    ) -> T {
        read_storage(&self.url, query)
    }
}

/// One value read from the database at `url`, on a connection of its own.
fn read_storage<T>(
    url: &str,
    query: impl FnOnce(&mut keyframe::db::SyncConn) -> diesel::QueryResult<T>,
) -> T {
    let db = Db::connect(&DatabaseUrl::parse(url).expect("url"), &DbOptions::pool(1)).expect("db");
    query(&mut db.conn().expect("conn")).expect("read")
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
        secret_key: None,
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

    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_on(TestDb::new(backend), &|_| {}).await
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
        let app = Application::build_with_clock(&cfg, pool, clock.clone())
            .await
            .expect("build app");
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

impl TestApp {
    /// Rows in the token tables (families, refresh tokens, revoked access tokens).
    pub fn token_rows(&self) -> i64 {
        use keyframe::db::schema::{refresh_tokens, revoked_access_tokens};
        self.count(|conn| refresh_tokens::table.count().get_result(conn))
            + self.count(|conn| revoked_access_tokens::table.count().get_result(conn))
            + self.token_families()
    }

    /// Rows in `token_families`: one per sign-in.
    pub fn token_families(&self) -> i64 {
        use keyframe::db::schema::token_families;
        self.count(|conn| token_families::table.count().get_result(conn))
    }

    /// Rows in `stream_tokens`: one per issued stream token.
    pub fn stream_token_rows(&self) -> i64 {
        use keyframe::db::schema::stream_tokens;
        self.count(|conn| stream_tokens::table.count().get_result(conn))
    }

    /// One count read directly from storage, on a connection of its own.
    fn count(
        &self,
        query: impl FnOnce(&mut keyframe::db::SyncConn) -> diesel::QueryResult<i64>,
    ) -> i64 {
        read_storage(&self.db_url, query)
    }
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
