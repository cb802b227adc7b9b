//! Persistence: the store (pools of both backends), migrations and transactions. This module
//! and its children hold the only SQL in Keyframe.
//!
//! Each statement is written once, as diesel DSL in a function of a child module, and run by
//! `run!` with the driver of the backend: diesel-async from the event loop on PostgreSQL,
//! diesel's own connection on SQLite (on the blocking thread that `Store::run` gives the
//! request). Callers await the same functions whichever backend runs.

pub mod api_tokens;
pub mod clients;
pub mod codes;
pub mod consents;
pub mod dsl;
pub mod keys;
pub mod login_failures;
pub mod postgres;
pub mod schema;
pub mod sessions;
pub mod stream_tokens;
pub mod tenants;
pub mod tokens;
pub mod users;

use std::fmt;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::error::Error;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// An arbitrary constant that names Keyframe's migration lock among PostgreSQL advisory locks.
const MIGRATION_LOCK_KEY: i64 = 0x6b65_7966_7261_6d65;

/// How long a request may wait for a pooled connection before the database counts as down.
const POOL_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Of the answer of `PRAGMA wal_checkpoint`: how many frames the log holds.
#[derive(diesel::QueryableByName)]
struct CheckpointResult {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    log: i64,
}

#[derive(diesel::QueryableByName)]
struct PageSize {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    page_size: i64,
}

/// Which database to use, parsed once from `--database-url`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite { path: String },
    Postgres { url: String },
}

impl DatabaseUrl {
    /// `postgres://` and `postgresql://` select PostgreSQL; `sqlite://PATH` or a plain path
    /// selects SQLite. Any other scheme is refused rather than taken for a file name.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Error::Config("the database URL is empty".into()));
        }
        let lower = raw.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            url::Url::parse(raw).map_err(|e| {
                Error::Config(format!("invalid PostgreSQL URL {}: {e}", redact_url(raw)))
            })?;
            return Ok(Self::Postgres {
                url: raw.to_owned(),
            });
        }
        let path = match lower.strip_prefix("sqlite://") {
            Some(_) => &raw["sqlite://".len()..],
            None => {
                if let Some((scheme, _)) = raw.split_once("://") {
                    return Err(Error::Config(format!(
                        "unsupported database URL scheme `{scheme}://`: use postgres://, \
                         postgresql://, sqlite://PATH or a file path"
                    )));
                }
                raw
            }
        };
        if path.is_empty() {
            return Err(Error::Config("the SQLite database path is empty".into()));
        }
        if path == ":memory:" {
            return Err(Error::Config(
                "an in-memory SQLite database is not shared between connections: use a file".into(),
            ));
        }
        Ok(Self::Sqlite {
            path: path.to_owned(),
        })
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }
}

/// Shown in messages and logs: a PostgreSQL password never appears.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { path } => write!(f, "sqlite://{path}"),
            Self::Postgres { url } => f.write_str(&redact_url(url)),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("redacted"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable URL>".into(),
    }
}

/// Opens connections of the configured backend. diesel's own `MultiConnection::establish`
/// tries every backend in turn, which would create a SQLite file named after a PostgreSQL URL.
pub struct ConnectionManager {
    url: DatabaseUrl,
    /// SQLite: the size the write-ahead log file is cut back to after it starts over.
    max_log_bytes: u64,
}

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        match &self.url {
            DatabaseUrl::Sqlite { path } => {
                let mut conn = SqliteConnection::establish(path)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                // busy_timeout first: switching to WAL takes a lock that a concurrent process
                // may hold. WAL + NORMAL is safe against process crashes and lets readers run
                // beside the one writer. No automatic checkpoints: SQLite runs them inside the
                // commit that crosses the threshold, while this process's writers wait behind
                // it; `serve` checkpoints in the background instead (`Db::checkpoint`), and
                // SQLite checkpoints when the last connection closes. A 1 MiB page cache per
                // connection (instead of 2): the operating system caches the file as well. A
                // log that grew past its limit in a burst is cut back when it starts over.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                     PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -1024; \
                     PRAGMA journal_size_limit = {};",
                    self.max_log_bytes
                ))
                .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
            DatabaseUrl::Postgres { url } => PgConnection::establish(url)
                .map(DbConnection::Postgres)
                .map_err(diesel::r2d2::Error::ConnectionError),
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

#[derive(Debug)]
struct TracingErrorHandler;

impl r2d2::HandleError<diesel::r2d2::Error> for TracingErrorHandler {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        tracing::warn!(error = %one_line(&error.to_string()), "database connection failed");
    }
}

pub type SyncConn = PooledConnection<ConnectionManager>;

/// The synchronous connection pool (diesel's own drivers), cheap to clone: SQLite's
/// connections, migrations on both backends.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager>,
    url: DatabaseUrl,
    max_log_bytes: u64,
}

/// How the pool is sized and, on SQLite, how large the write-ahead log may grow.
#[derive(Debug, Clone, Copy)]
pub struct DbOptions {
    pub pool_size: u32,
    pub sqlite_max_log_bytes: u64,
}

impl DbOptions {
    pub const DEFAULT_SQLITE_MAX_LOG_BYTES: u64 = 32 * 1024 * 1024;

    pub fn pool(pool_size: u32) -> Self {
        Self {
            pool_size,
            sqlite_max_log_bytes: Self::DEFAULT_SQLITE_MAX_LOG_BYTES,
        }
    }
}

impl Db {
    /// Builds the pool and checks that the database answers, so that a wrong URL or a database
    /// that is down is reported at once instead of on the first request.
    pub fn connect(url: &DatabaseUrl, options: &DbOptions) -> Result<Self, Error> {
        // A direct connection attempt first: it gives the real reason (r2d2 only reports a
        // timeout), and it fails before the pool starts connecting in the background.
        let manager = ConnectionManager {
            url: url.clone(),
            max_log_bytes: options.sqlite_max_log_bytes,
        };
        let first = manager.connect().map_err(|e| {
            Error::Unavailable(format!(
                "cannot connect to the database {url}: {}",
                one_line(&e.to_string())
            ))
        })?;
        drop(first);
        let pool = Pool::builder()
            .max_size(options.pool_size)
            // No background pre-connecting: a process that exits while an r2d2 thread is
            // inside libpq's connect (TLS negotiation) crashes in the C library's exit cleanup.
            .min_idle(Some(0))
            .connection_timeout(POOL_CHECKOUT_TIMEOUT)
            // No `SELECT 1` before every use: it doubled the round trips of the hot paths.
            // Broken connections are dropped when returned (has_broken), and /healthz checks
            // the database itself.
            .test_on_check_out(false)
            .error_handler(Box::new(TracingErrorHandler))
            .build_unchecked(manager);
        Ok(Self {
            pool,
            url: url.clone(),
            max_log_bytes: options.sqlite_max_log_bytes,
        })
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    pub fn conn(&self) -> Result<SyncConn, Error> {
        self.pool.get().map_err(|e| {
            Error::Unavailable(format!(
                "the database is unavailable: {}",
                one_line(&e.to_string())
            ))
        })
    }

    /// SQLite: copies the write-ahead log back into the database file, and has the log start
    /// over once it holds more than `--sqlite-max-log-mb`. A passive checkpoint runs beside
    /// the writers but never catches up with a steady stream of them, so alone it let the log
    /// grow by hundreds of MB a minute. Starting over takes a RESTART checkpoint, during which
    /// this process's writers wait (5-13 ms, mostly its fsync, measured on a 2-core VM); doing it
    /// only past a size makes those waits rarer instead of every 100 ms. The bulk of the
    /// copying and syncing is still done first, passively, so the RESTART has little left.
    /// Nothing to do on PostgreSQL.
    pub fn checkpoint(&self) -> Result<(), Error> {
        use diesel::RunQueryDsl;
        if let DatabaseUrl::Sqlite { .. } = self.url {
            let mut conn = self.conn()?;
            let DbConnection::Sqlite(c) = &mut *conn else {
                unreachable!("a SQLite URL gives SQLite connections");
            };
            let passive = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)")
                .get_result::<CheckpointResult>(c)?;
            let page_size = diesel::sql_query("PRAGMA page_size").get_result::<PageSize>(c)?;
            let log_bytes = passive.log.max(0) as u64 * page_size.page_size.max(0) as u64;
            if log_bytes <= self.max_log_bytes {
                return Ok(());
            }
            let _writer = SQLITE_WRITER.acquire();
            let started = std::time::Instant::now();
            c.batch_execute("PRAGMA wal_checkpoint(RESTART)")?;
            tracing::debug!(
                log_bytes,
                writers_waited_us = started.elapsed().as_micros() as u64,
                "the SQLite log starts over"
            );
        }
        Ok(())
    }

    /// A quick liveness check for `/healthz`: a fresh or validated connection and `SELECT 1`.
    pub fn ping(&self, timeout: Duration) -> Result<(), Error> {
        let mut conn = self.pool.get_timeout(timeout).map_err(|e| {
            Error::Unavailable(format!(
                "the database is unavailable: {}",
                one_line(&e.to_string())
            ))
        })?;
        conn.batch_execute("SELECT 1")?;
        Ok(())
    }

    /// Applies pending migrations under a lock, so that several instances (or CLI processes)
    /// starting together do not race each other. Returns the versions it applied.
    pub fn migrate(&self) -> Result<Vec<String>, Error> {
        use diesel::RunQueryDsl;
        // A connection of its own, closed afterwards: on PostgreSQL nothing else uses this
        // synchronous pool, and an idle connection would hold its memory for nothing.
        let manager = ConnectionManager {
            url: self.url.clone(),
            max_log_bytes: self.max_log_bytes,
        };
        let mut conn = manager.connect().map_err(|e| {
            Error::Unavailable(format!(
                "cannot connect to the database {}: {}",
                self.url,
                one_line(&e.to_string())
            ))
        })?;
        let applied = match &mut conn {
            DbConnection::Sqlite(c) => {
                if !has_pending(c, SQLITE_MIGRATIONS)? {
                    return Ok(Vec::new());
                }
                // An exclusive transaction is SQLite's lock; each migration runs in a savepoint.
                c.exclusive_transaction(|c| run_pending(c, SQLITE_MIGRATIONS))?
            }
            DbConnection::Postgres(c) => {
                if !has_pending(c, POSTGRES_MIGRATIONS)? {
                    return Ok(Vec::new());
                }
                diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                    .execute(c)?;
                let result = run_pending(c, POSTGRES_MIGRATIONS);
                diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                    .execute(c)?;
                result?
            }
        };
        Ok(applied)
    }
}

fn has_pending<C>(conn: &mut C, migrations: EmbeddedMigrations) -> Result<bool, Error>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    conn.has_pending_migration(migrations)
        .map_err(|e| Error::Internal(format!("cannot read the migration state: {e}")))
}

fn run_pending<C>(conn: &mut C, migrations: EmbeddedMigrations) -> Result<Vec<String>, Error>
where
    C: MigrationHarness<C::Backend> + Connection,
{
    conn.run_pending_migrations(migrations)
        .map(|versions| versions.iter().map(|v| v.to_string()).collect())
        .map_err(|e| Error::Internal(format!("migration failed: {e}")))
}

/// The names of the embedded migrations of each backend, for the test that keeps them in step.
pub fn migration_names() -> (Vec<String>, Vec<String>) {
    use diesel::migration::MigrationSource;
    fn names<DB: diesel::backend::Backend>(m: EmbeddedMigrations) -> Vec<String>
    where
        EmbeddedMigrations: MigrationSource<DB>,
    {
        MigrationSource::<DB>::migrations(&m)
            .map(|list| list.iter().map(|m| m.name().to_string()).collect())
            .unwrap_or_default()
    }
    (
        names::<diesel::sqlite::Sqlite>(SQLITE_MIGRATIONS),
        names::<diesel::pg::Pg>(POSTGRES_MIGRATIONS),
    )
}

/// A connection of the store: a pooled SQLite connection (used on a blocking thread) or a
/// pooled asynchronous PostgreSQL connection (used from the event loop).
// One per request, on its stack: boxing the large variant would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Conn {
    Sqlite(SyncConn),
    Postgres(postgres::PooledPg),
}

impl Conn {
    /// Runs CPU-heavy work (argon2) off the event loop: on SQLite the request already runs on a
    /// blocking thread, so inline; on PostgreSQL on the blocking pool, while the worker serves
    /// other requests.
    pub async fn off_loop<T: Send + 'static>(
        &mut self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        match self {
            Conn::Sqlite(_) => Ok(work()),
            Conn::Postgres(_) => tokio::task::spawn_blocking(work)
                .await
                .map_err(|e| Error::Internal(format!("a blocking task failed: {e}"))),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Conn::Sqlite(_) => "sqlite",
            Conn::Postgres(_) => "postgres",
        }
    }
}

/// The SQLite connection inside a pooled one (a SQLite store pools only SQLite connections).
pub fn sqlite(conn: &mut SyncConn) -> &mut SqliteConnection {
    match &mut **conn {
        DbConnection::Sqlite(c) => c,
        DbConnection::Postgres(_) => unreachable!("a SQLite store holds SQLite connections"),
    }
}

/// Runs one statement built by `$body` on the store connection `$conn`: with diesel's
/// `RunQueryDsl` on SQLite, with diesel-async's (awaited) on PostgreSQL. `$body` is expanded
/// once per backend, so the query it builds is typed for that backend; it must be the call
/// that runs the query (`.execute(c)`, `.load(c)`, `.get_result(c)`, ...), and anything done
/// with the result goes outside.
macro_rules! run {
    ($conn:expr, |$c:ident| $body:expr) => {
        match &mut *$conn {
            $crate::db::Conn::Sqlite(pooled) => {
                #[allow(unused_imports)]
                use diesel::RunQueryDsl as _;
                let $c = $crate::db::sqlite(pooled);
                $body
            }
            $crate::db::Conn::Postgres(pooled) => {
                #[allow(unused_imports)]
                use diesel_async::RunQueryDsl as _;
                let $c: &mut diesel_async::AsyncPgConnection = &mut *pooled;
                $body.await
            }
        }
    };
}
pub(crate) use run;

/// Where the store's connections come from.
#[derive(Clone)]
enum Pools {
    Sqlite,
    Postgres {
        /// The requests' connections.
        pool: postgres::PgPool,
        /// One connection for the start-up and the periodic purge. A connection's driver
        /// task runs on the thread that opened it; opened outside the HTTP workers and then
        /// used by them, every statement would wake that thread as well.
        background: postgres::PgPool,
    },
}

/// The store: what the server and the CLI read and write through. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The synchronous pool: SQLite's connections, and on PostgreSQL only the migrations'.
    db: Db,
    pools: Pools,
}

impl Store {
    /// Builds the pools and checks that the database answers (see `Db::connect`).
    pub fn connect(url: &DatabaseUrl, options: &DbOptions) -> Result<Self, Error> {
        let db = Db::connect(url, options)?;
        Self::over(db, options.pool_size)
    }

    /// The store over an already connected synchronous pool.
    pub fn over(db: Db, pool_size: u32) -> Result<Self, Error> {
        let pools = match db.url() {
            DatabaseUrl::Sqlite { .. } => Pools::Sqlite,
            DatabaseUrl::Postgres { url } => {
                let connector = postgres::Connector::new(url)?;
                Pools::Postgres {
                    pool: postgres::pool(&connector, pool_size, POOL_CHECKOUT_TIMEOUT)?,
                    background: postgres::pool(&connector, 1, POOL_CHECKOUT_TIMEOUT)?,
                }
            }
        };
        Ok(Self { db, pools })
    }

    /// The same database through the background connection (see `Pools`), for work that runs
    /// outside the HTTP workers: the start-up and the purge.
    pub fn background(&self) -> Store {
        let pools = match &self.pools {
            Pools::Sqlite => Pools::Sqlite,
            Pools::Postgres { background, .. } => Pools::Postgres {
                pool: background.clone(),
                background: background.clone(),
            },
        };
        Store {
            db: self.db.clone(),
            pools,
        }
    }

    /// The synchronous pool: migrations, SQLite checkpoints, raw checks in tests.
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn url(&self) -> &DatabaseUrl {
        self.db.url()
    }

    /// A connection for a caller that may block its thread (the CLI, tests). Request handlers
    /// use `run`, which keeps SQLite's blocking off the event loop.
    pub async fn conn(&self) -> Result<Conn, Error> {
        match &self.pools {
            Pools::Sqlite => Ok(Conn::Sqlite(self.db.conn()?)),
            Pools::Postgres { pool, .. } => Ok(Conn::Postgres(postgres::checkout(pool).await?)),
        }
    }

    /// Runs `work` with a connection. On PostgreSQL it runs here, on the event loop, and the
    /// worker serves other requests while the database answers. On SQLite, whose driver
    /// blocks, it runs to its end on one blocking thread that holds the connection: one
    /// hand-off per request, not one per statement.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<Error> + Send + 'static,
    {
        match &self.pools {
            Pools::Postgres { pool, .. } => {
                let mut conn = Conn::Postgres(postgres::checkout(pool).await?);
                work(&mut conn).await
            }
            Pools::Sqlite => {
                let db = self.db.clone();
                tokio::task::spawn_blocking(move || {
                    let mut conn = Conn::Sqlite(db.conn()?);
                    futures_executor::block_on(work(&mut conn))
                })
                .await
                .unwrap_or_else(|e| {
                    Err(E::from(Error::Internal(format!(
                        "a database task failed: {e}"
                    ))))
                })
            }
        }
    }

    /// A quick liveness check for `/healthz`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), Error> {
        match &self.pools {
            Pools::Sqlite => {
                let db = self.db.clone();
                tokio::task::spawn_blocking(move || db.ping(timeout))
                    .await
                    .map_err(|e| Error::Internal(format!("a database task failed: {e}")))?
            }
            Pools::Postgres { pool, .. } => {
                use diesel_async::SimpleAsyncConnection;
                let check = async {
                    let mut conn = postgres::checkout(pool).await?;
                    conn.batch_execute("SELECT 1").await?;
                    Ok::<_, Error>(())
                };
                tokio::time::timeout(timeout, check)
                    .await
                    .map_err(|_| Error::Unavailable("the database did not answer in time".into()))?
            }
        }
    }
}

/// Serialises this process's SQLite write transactions (see `write_transaction`). One lock for
/// every SQLite database of the process: in production that is one database.
static SQLITE_WRITER: WriterLock = WriterLock {
    busy: std::sync::Mutex::new(false),
    free: std::sync::Condvar::new(),
};

/// A lock whose guard may be held across an `.await` inside a transaction (a `MutexGuard` is
/// not `Send`): the mutex guards only the flag that says a writer holds the turn.
struct WriterLock {
    busy: std::sync::Mutex<bool>,
    free: std::sync::Condvar,
}

struct WriterTurn(&'static WriterLock);

impl WriterLock {
    fn acquire(&'static self) -> WriterTurn {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            busy = self.free.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        *busy = true;
        WriterTurn(self)
    }
}

impl Drop for WriterTurn {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.0.free.notify_one();
    }
}

/// Runs `f` in a transaction (a savepoint inside one) that holds the write lock from its first
/// statement. On SQLite a plain (deferred) transaction that reads before it writes fails with
/// SQLITE_BUSY, without waiting, when another writer got in between; `BEGIN IMMEDIATE` makes it
/// wait its turn instead.
pub async fn write_transaction<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: AsyncFnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel_async::TransactionManager as _;
    type PgManager = diesel_async::AnsiTransactionManager;
    // SQLite has one writer at a time. Its busy handler waits by sleeping and polling, and under
    // sustained load an unlucky writer starved past the busy timeout ("database is locked"). So
    // this process's writers queue on a lock first; busy_timeout still covers other processes.
    let _writer = match conn {
        Conn::Sqlite(pooled) => {
            let c = sqlite(pooled);
            let depth =
                AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth()?;
            if depth.is_some() {
                AnsiTransactionManager::begin_transaction(c)?;
                None
            } else {
                let guard = SQLITE_WRITER.acquire();
                AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?;
                Some(guard)
            }
        }
        Conn::Postgres(c) => {
            PgManager::begin_transaction(&mut **c).await?;
            None
        }
    };
    let result = f(conn).await;
    let end = match (conn, result.is_ok()) {
        (Conn::Sqlite(pooled), true) => AnsiTransactionManager::commit_transaction(sqlite(pooled)),
        (Conn::Sqlite(pooled), false) => {
            AnsiTransactionManager::rollback_transaction(sqlite(pooled))
        }
        (Conn::Postgres(c), true) => PgManager::commit_transaction(&mut **c).await,
        (Conn::Postgres(c), false) => PgManager::rollback_transaction(&mut **c).await,
    };
    match (result, end) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(commit)) => Err(commit.into()),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(rollback)) => {
            tracing::error!(error = %rollback, "rollback failed");
            Err(e)
        }
    }
}

/// Multi-line driver messages (libpq's) folded into one line for logs and CLI errors.
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// JSON text columns hold string lists.
pub(crate) fn to_json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn from_json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

/// True when there are no tenants, users or clients yet.
pub async fn is_empty(conn: &mut Conn) -> Result<bool, Error> {
    use diesel::dsl::{exists, select};
    use dsl::QueryDsl;
    use schema::{clients, tenants, users};
    let tenant = select(exists(tenants::table.select(tenants::id)));
    let user = select(exists(users::table.select(users::id)));
    let client = select(exists(clients::table.select(clients::id)));
    let any = run!(&mut *conn, |c| tenant.get_result::<bool>(c))?
        || run!(&mut *conn, |c| user.get_result::<bool>(c))?
        || run!(&mut *conn, |c| client.get_result::<bool>(c))?;
    Ok(!any)
}
