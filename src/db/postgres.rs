//! The asynchronous PostgreSQL pool: diesel-async on tokio-postgres, with TLS as the URL asks.
//!
//! tokio-postgres knows `sslmode` only as disable/prefer/require and no `sslrootcert`, so the
//! URL's TLS settings are read here, taken out of the URL, and applied to the OpenSSL
//! connector, with libpq's meaning: `prefer` and `require` encrypt without checking the
//! certificate, `verify-ca` checks its chain, `verify-full` its chain and host name.

use std::time::Duration;

use diesel::ConnectionError;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::RecyclingMethod;
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::AsyncPgConnection;
use futures_util::FutureExt;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;

use crate::error::Error;

pub type PgPool = Pool<AsyncPgConnection>;
pub type PooledPg = Object<AsyncPgConnection>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// What the URL says about TLS, and the URL without what tokio-postgres cannot read.
#[derive(Debug, Clone)]
struct TlsSettings {
    mode: SslMode,
    root_cert: Option<String>,
    url: String,
}

fn tls_settings(raw: &str) -> Result<TlsSettings, Error> {
    let mut url =
        url::Url::parse(raw).map_err(|e| Error::Config(format!("invalid PostgreSQL URL: {e}")))?;
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut kept = Vec::new();
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "sslmode" => {
                mode = match value.as_ref() {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    other => {
                        return Err(Error::Config(format!(
                            "unsupported sslmode {other:?} in the PostgreSQL URL"
                        )))
                    }
                }
            }
            "sslrootcert" => root_cert = Some(value.into_owned()),
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    let driver_mode = match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
    };
    kept.push(("sslmode".into(), driver_mode.into()));
    url.query_pairs_mut().clear().extend_pairs(kept);
    Ok(TlsSettings {
        mode,
        root_cert,
        url: url.to_string(),
    })
}

fn tls_connector(settings: &TlsSettings) -> Result<MakeTlsConnector, openssl::error::ErrorStack> {
    let mut builder = SslConnector::builder(SslMethod::tls_client())?;
    if let Some(path) = &settings.root_cert {
        builder.set_ca_file(path)?;
    }
    let verify = matches!(settings.mode, SslMode::VerifyCa | SslMode::VerifyFull);
    if !verify {
        builder.set_verify(SslVerifyMode::NONE);
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    if settings.mode == SslMode::VerifyCa {
        connector.set_callback(|config, _| {
            config.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

/// How to open a connection: the URL for tokio-postgres and one TLS connector, shared by every
/// connection of every pool (an OpenSSL context with the system's certificate store loaded into
/// it costs about a megabyte; one per connection grew the server by 9 MB).
#[derive(Clone)]
pub struct Connector {
    url: String,
    tls: MakeTlsConnector,
}

impl Connector {
    /// Reads the URL's TLS settings and builds the connector they ask for, so that a bad
    /// setting (an unreadable `sslrootcert`) is reported at start.
    pub fn new(raw_url: &str) -> Result<Self, Error> {
        let settings = tls_settings(raw_url)?;
        let tls = tls_connector(&settings)
            .map_err(|e| Error::Config(format!("cannot set up TLS to PostgreSQL: {e}")))?;
        Ok(Self {
            url: settings.url,
            tls,
        })
    }

    async fn establish(self) -> Result<AsyncPgConnection, ConnectionError> {
        let (client, connection) = tokio_postgres::connect(&self.url, self.tls)
            .await
            .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }
}

/// A pool of `size` connections opened on demand by `connector`.
pub fn pool(connector: &Connector, size: u32, checkout_timeout: Duration) -> Result<PgPool, Error> {
    let mut config = ManagerConfig::default();
    // A connection PostgreSQL closed is noticed by its driver task and dropped at checkout
    // (`is_broken`); a `SELECT 1` before every use would double the round trips.
    config.recycling_method = RecyclingMethod::Fast;
    let for_setup = connector.clone();
    config.custom_setup = Box::new(move |_| for_setup.clone().establish().boxed());
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        connector.url.clone(),
        config,
    );
    Pool::builder(manager)
        .max_size(size as usize)
        .wait_timeout(Some(checkout_timeout))
        .create_timeout(Some(checkout_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Config(format!("cannot build the PostgreSQL pool: {e}")))
}

/// A pooled connection, or `Unavailable` with the reason.
pub async fn checkout(pool: &PgPool) -> Result<PooledPg, Error> {
    pool.get().await.map_err(|e| {
        Error::Unavailable(format!(
            "the database is unavailable: {}",
            super::one_line(&e.to_string())
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_follow_libpq_and_leave_the_rest_of_the_url() {
        let s = tls_settings(
            "postgres://u:p@db:5432/kf?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=kf",
        )
        .expect("settings");
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(
            s.url,
            "postgres://u:p@db:5432/kf?application_name=kf&sslmode=require"
        );
        let s = tls_settings("postgres://db/kf").expect("settings");
        assert_eq!(s.mode, SslMode::Prefer);
        assert!(s.url.ends_with("sslmode=prefer"));
        assert_eq!(
            tls_settings("postgres://db/kf?sslmode=disable")
                .expect("settings")
                .mode,
            SslMode::Disable
        );
        assert!(matches!(
            tls_settings("postgres://db/kf?sslmode=sometimes"),
            Err(Error::Config(_))
        ));
    }
}
