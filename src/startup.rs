//! Builds and runs the HTTP server; used by `keyframe serve` and by the integration tests.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use tracing_actix_web::TracingLogger;

use crate::clients::KnownClients;
use crate::clock;
use crate::config::Config;
use crate::db::{DatabaseUrl, Db, DbOptions};
use crate::error::Error;
use crate::http::{self, health, limits};
use crate::oauth;
use crate::oauth::metadata::{self, MetadataCache};
use crate::oauth::{authorize, introspect, jwks, revoke, token};
use crate::proxy::TrustedProxies;
use crate::telemetry::RequestSpan;
use crate::tokens::{self, TokenService};
use crate::vms;

/// What every handler may use. Built once at start.
pub struct AppState {
    pub db: Db,
    pub tokens: TokenService,
    pub clients: KnownClients,
    pub max_body_bytes: usize,
    pub metadata: MetadataCache,
    /// Whose `X-Forwarded-For` names a request's source (`--trust-proxy`).
    pub proxies: TrustedProxies,
}

/// How often `serve` deletes expired and revoked rows.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

/// Connects to the database and brings its schema up to date (blocking).
pub fn prepare_database(config: &Config) -> Result<Db, Error> {
    let db = Db::connect(
        &config.database_url,
        &DbOptions {
            pool_size: config.db_pool_size,
            sqlite_max_log_bytes: config.sqlite_max_log_bytes,
        },
    )?;
    db.migrate()?;
    Ok(db)
}

pub struct Application {
    port: u16,
    issuer: String,
    server: Server,
}

impl Application {
    /// Binds the listening socket and builds the server; call inside an actix or tokio runtime.
    pub fn build(config: &Config, db: Db) -> Result<Self, Error> {
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
        let mut conn = db.conn()?;
        let tokens = TokenService::new(
            &mut conn,
            issuer.clone(),
            config.tokens.clone(),
            clock::now(),
        )?;
        let clients = KnownClients::default();
        if config.vms_api {
            vms::builtin_client(&clients, &mut conn)?;
        }
        drop(conn);
        let vms_api = config.vms_api;
        let state = web::Data::new(AppState {
            db,
            tokens,
            clients,
            max_body_bytes: config.max_body_bytes,
            metadata: MetadataCache::default(),
            proxies: TrustedProxies::new(config.trusted_proxies.clone()),
        });
        spawn_purge(state.clone().into_inner());
        spawn_checkpoints(state.db.clone());
        spawn_password_memory_release();
        let limit = config.max_body_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(move |req, next| {
                    limits::enforce_body_limit(limit, req, next)
                }))
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(limit))
                .app_data(web::FormConfig::default().limit(limit))
                .app_data(web::JsonConfig::default().limit(limit))
                .route("/healthz", web::get().to(health::healthz))
                .route(
                    oauth::AUTHORIZATION_PATH,
                    web::get().to(authorize::authorize),
                )
                .route(
                    "/oauth/authorize/login",
                    web::post().to(crate::web::login::login),
                )
                .route(
                    "/oauth/authorize/consent",
                    web::post().to(crate::web::consent::consent),
                )
                .route("/oauth/logout", web::post().to(crate::web::login::logout))
                .route(
                    "/static/keyframe.css",
                    web::get().to(crate::web::stylesheet),
                )
                .route("/static/copy.js", web::get().to(crate::web::copy_script))
                .route("/login", web::get().to(crate::web::tokens::login_page))
                .route("/login", web::post().to(crate::web::tokens::login))
                .route("/tokens", web::get().to(crate::web::tokens::show))
                .route("/tokens/create", web::post().to(crate::web::tokens::create))
                .route(
                    "/tokens/{id}/{action}",
                    web::get().to(crate::web::tokens::confirm),
                )
                .route(
                    "/tokens/{id}/{action}",
                    web::post().to(crate::web::tokens::change),
                )
                .route(oauth::TOKEN_PATH, web::post().to(token::token))
                .route(
                    oauth::INTROSPECTION_PATH,
                    web::post().to(introspect::introspect),
                )
                .route(oauth::REVOCATION_PATH, web::post().to(revoke::revoke))
                .route(oauth::JWKS_PATH, web::get().to(jwks::jwks))
                .configure(crate::api::configure)
                .configure(|cfg| {
                    if vms_api {
                        vms::configure(cfg);
                    }
                })
                .route(
                    "/.well-known/oauth-authorization-server",
                    web::get().to(metadata::authorization_server),
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
            let state = state.clone();
            let result = tokio::task::spawn_blocking(move || {
                let mut conn = state.db.conn()?;
                tokens::purge(&mut conn, &state.tokens.settings, clock::now())
            })
            .await;
            match result {
                Ok(Ok(purged)) => tracing::info!(?purged, "purged expired and revoked rows"),
                Ok(Err(error)) => tracing::warn!(%error, "purge failed"),
                Err(error) => tracing::warn!(%error, "purge task failed"),
            }
        }
    });
}
