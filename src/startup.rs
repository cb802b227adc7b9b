//! Builds and runs the HTTP server; used by `keyframe serve` and by the integration tests.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::clients::KnownClients;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{DatabaseUrl, Db, DbOptions, Store};
use crate::error::Error;
use crate::http::endpoint::Endpoint;
use crate::http::{self, health, limits};
use crate::oauth;
use crate::oauth::metadata::{self, MetadataCache};
use crate::oauth::{authorize, introspect, jwks, revoke, token};
use crate::proxy::TrustedProxies;
use crate::telemetry::RequestSpan;
use crate::tokens::{self, TokenService};
use crate::vms;
use crate::web as pages;

/// What every handler may use. Built once at start.
pub struct AppState {
    pub store: Store,
    pub tokens: TokenService,
    pub clients: KnownClients,
    pub max_body_bytes: usize,
    pub metadata: MetadataCache,
    /// Whose `X-Forwarded-For` names a request's source (`--trust-proxy`).
    pub proxies: TrustedProxies,
    /// The time every handler reads.
    pub clock: Clock,
    /// `KEYFRAME_SECRET_KEY`: opens the tenants' stored URL secrets.
    pub secret_key: Option<crate::secrets::SecretKey>,
}

impl AppState {
    /// The pages' cookies, named and flagged for this issuer.
    pub fn cookies(&self) -> crate::web::cookies::Cookies {
        crate::web::cookies::Cookies::for_issuer(&self.tokens.issuer)
    }
}

/// How often `serve` deletes expired and revoked rows.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Connects to the database and brings its schema up to date (blocking).
pub fn prepare_database(config: &Config) -> Result<Store, Error> {
    let options = DbOptions {
        pool_size: config.db_pool_size,
        sqlite_max_log_bytes: config.sqlite_max_log_bytes,
    };
    let db = Db::connect(&config.database_url, &options)?;
    db.migrate()?;
    Store::over(db, options.pool_size)
}

pub struct Application {
    port: u16,
    issuer: String,
    server: Server,
}

impl Application {
    /// Binds the listening socket and builds the server; call inside an actix or tokio runtime.
    pub async fn build(config: &Config, store: Store) -> Result<Self, Error> {
        Self::build_with_clock(config, store, Clock::system()).await
    }

    /// `build` with the clock the server reads (tests move a manual one).
    pub async fn build_with_clock(
        config: &Config,
        store: Store,
        clock: Clock,
    ) -> Result<Self, Error> {
        let listener = TcpListener::bind(&config.listen)
            .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", config.listen)))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", config.listen)))?;
        let issuer = match &config.issuer {
            Some(issuer) => issuer.clone(),
            // Port 0 asks the OS for a port: the issuer has to name the one it gave.
            None if config.listen.ends_with(":0") => format!("http://{local}"),
            None => format!("http://{}", config.listen),
        };
        let mut conn = store.background().conn().await?;
        let tokens = TokenService::new(
            &mut conn,
            issuer.clone(),
            config.tokens.clone(),
            clock.now(),
        )
        .await?;
        let clients = KnownClients::default();
        if config.vms_api {
            vms::builtin_client(&clients, &mut conn, clock.now()).await?;
        }
        drop(conn);
        let vms_api = config.vms_api;
        let state = web::Data::new(AppState {
            store,
            tokens,
            clients,
            max_body_bytes: config.max_body_bytes,
            metadata: MetadataCache::default(),
            proxies: TrustedProxies::new(config.trusted_proxies.clone()),
            clock,
            secret_key: config.secret_key.clone(),
        });
        spawn_purge(state.clone().into_inner());
        spawn_checkpoints(state.store.db().clone());
        spawn_password_memory_release();
        let limit = config.max_body_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(move |req, next| {
                    limits::enforce_body_limit(limit, req, next)
                }))
                // Every answer, JSON included, is taken for what its Content-Type says.
                .wrap(DefaultHeaders::new().add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")))
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(limit))
                .app_data(web::FormConfig::default().limit(limit))
                .app_data(web::JsonConfig::default().limit(limit))
                .service(Endpoint::new("/healthz").get(health::healthz))
                .service(Endpoint::new(oauth::AUTHORIZATION_PATH).get(authorize::authorize))
                .service(Endpoint::new("/oauth/authorize/login").post(pages::login::login))
                .service(Endpoint::new("/oauth/authorize/consent").post(pages::consent::consent))
                .service(Endpoint::new("/oauth/logout").post(pages::login::logout))
                .service(Endpoint::new("/static/keyframe.css").get(pages::stylesheet))
                .service(Endpoint::new("/static/copy.js").get(pages::copy_script))
                .service(
                    Endpoint::new("/login")
                        .get(pages::tokens::login_page)
                        .post(pages::tokens::login),
                )
                .service(Endpoint::new("/tokens").get(pages::tokens::show))
                .service(Endpoint::new("/tokens/create").post(pages::tokens::create))
                .service(
                    Endpoint::new("/tokens/{id}/{action}")
                        .get(pages::tokens::confirm)
                        .post(pages::tokens::change),
                )
                .service(Endpoint::new(oauth::TOKEN_PATH).post(token::token))
                .service(Endpoint::new(oauth::INTROSPECTION_PATH).post(introspect::introspect))
                .service(Endpoint::new(oauth::REVOCATION_PATH).post(revoke::revoke))
                .service(Endpoint::new(oauth::JWKS_PATH).get(jwks::jwks))
                .configure(crate::api::configure)
                .configure(crate::jsonrpc::configure)
                .configure(crate::media::flussonic::configure)
                .configure(|cfg| {
                    if vms_api {
                        vms::configure(cfg);
                    }
                })
                .service(
                    Endpoint::new("/.well-known/oauth-authorization-server")
                        .get(metadata::authorization_server),
                )
                .default_service(web::to(http::not_found))
        })
        .shutdown_timeout(10)
        // Blocking work is database work (at most one task per pooled connection runs) and
        // argon2 (at most one per core). Tokio's default of hundreds of threads only added
        // idle threads with their own stacks and malloc arenas under load.
        .worker_max_blocking_threads(blocking_threads(config.db_pool_size))
        .listen(listener)
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", config.listen)))?
        .run();
        Ok(Self {
            port: local.port(),
            issuer,
            server,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Runs until SIGTERM or SIGINT, then finishes the requests in flight (graceful shutdown).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Deletes expired and revoked rows now and then, so that the tables do not grow without bound.
fn blocking_threads(db_pool_size: u32) -> usize {
    db_pool_size as usize + crate::config::usable_cores()
}

/// argon2's working memory (19 MiB per core) goes back to the system after this long without
/// a sign-in.
const PASSWORD_MEMORY_IDLE: Duration = Duration::from_secs(10);

fn spawn_password_memory_release() {
    tokio::spawn(async {
        let mut interval = tokio::time::interval(PASSWORD_MEMORY_IDLE / 2);
        loop {
            interval.tick().await;
            if crate::passwords::release_idle(PASSWORD_MEMORY_IDLE) {
                tracing::debug!("released the idle password-hashing memory");
            }
        }
    });
}

/// SQLite: how often `serve` copies the write-ahead log into the database file (see
/// `Db::checkpoint`); often enough that each pass has only a few MB to copy.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

fn spawn_checkpoints(db: Db) {
    if !matches!(db.url(), DatabaseUrl::Sqlite { .. }) {
        return;
    }
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let db = db.clone();
            match tokio::task::spawn_blocking(move || db.checkpoint()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "checkpoint failed"),
                Err(error) => tracing::warn!(%error, "checkpoint task failed"),
            }
        }
    });
}

fn spawn_purge(state: Arc<AppState>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(PURGE_INTERVAL);
        loop {
            interval.tick().await;
            let worker = state.clone();
            let result = state
                .store
                .background()
                .run(async move |conn| {
                    tokens::purge(conn, &worker.tokens.settings, worker.clock.now()).await
                })
                .await;
            match result {
                Ok(purged) => tracing::info!(?purged, "purged expired and revoked rows"),
                Err(error) => tracing::warn!(%error, "purge failed"),
            }
        }
    });
}
