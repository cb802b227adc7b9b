//! Configuration: command-line flags, then `KEYFRAME_*` environment variables, then defaults,
//! read once here and passed down. Nothing else reads the environment.

use std::net::ToSocketAddrs;

use clap::{Args, Parser, Subcommand};

use crate::db::DatabaseUrl;
use crate::error::Error;
use crate::secrets::SecretKey;

#[derive(Debug, Parser)]
#[command(
    name = "keyframe",
    version,
    about = "An OAuth 2.0 authorization server for video platforms"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings shared by every command; they may stand before or after the subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// postgres://… or postgresql://… for PostgreSQL; sqlite://PATH or a file path for SQLite
    #[arg(
        long,
        global = true,
        env = "KEYFRAME_DATABASE_URL",
        hide_env_values = true,
        default_value = "keyframe.db"
    )]
    pub database_url: String,
    /// Address the server listens on
    #[arg(
        long,
        global = true,
        env = "KEYFRAME_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: String,
    /// Public base URL of this server, the `iss` of its tokens [default: http://<listen>]
    #[arg(long, global = true, env = "KEYFRAME_ISSUER")]
    pub issuer: Option<String>,
    /// Largest accepted request body, in bytes
    #[arg(long, global = true, env = "KEYFRAME_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Database connections per instance [default: 10 on PostgreSQL; 2 + cores on SQLite]
    #[arg(long, global = true, env = "KEYFRAME_DB_POOL_SIZE",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: Option<u32>,
    /// SQLite: how large the write-ahead log may grow, in MiB, before writers pause briefly for
    /// it to start over (larger: rarer pauses, more disk)
    #[arg(long, global = true, env = "KEYFRAME_SQLITE_MAX_LOG_MB", default_value_t = 32,
          value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub sqlite_max_log_mb: u64,
    /// `aud` of access tokens [default: the issuer]
    #[arg(long, global = true, env = "KEYFRAME_AUDIENCE")]
    pub audience: Option<String>,
    /// Access token lifetime, in seconds
    #[arg(long, global = true, env = "KEYFRAME_ACCESS_TOKEN_TTL", default_value_t = 600,
          value_parser = clap::value_parser!(i64).range(1..=86_400))]
    pub access_token_ttl: i64,
    /// Absolute refresh token lifetime, in seconds (30 days)
    #[arg(long, global = true, env = "KEYFRAME_REFRESH_TOKEN_TTL", default_value_t = 30 * 86_400,
          value_parser = clap::value_parser!(i64).range(1..=3_650 * 86_400))]
    pub refresh_token_ttl: i64,
    /// Refresh token idle lifetime, in seconds (14 days)
    #[arg(long, global = true, env = "KEYFRAME_REFRESH_TOKEN_IDLE_TTL", default_value_t = 14 * 86_400,
          value_parser = clap::value_parser!(i64).range(1..=3_650 * 86_400))]
    pub refresh_token_idle_ttl: i64,
    /// Seconds after a rotation in which the same client may present the old refresh token
    /// again without revoking the family (for clients that race by design)
    #[arg(long, global = true, env = "KEYFRAME_REFRESH_REUSE_GRACE", default_value_t = 0,
          value_parser = clap::value_parser!(i64).range(0..=300))]
    pub refresh_reuse_grace: i64,
    /// Failed sign-ins per username and source address within the window that lock the
    /// username for that source
    #[arg(long, global = true, env = "KEYFRAME_LOCKOUT_THRESHOLD", default_value_t = 5,
          value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub lockout_threshold: i64,
    /// Failed sign-ins per username from all sources within the window that lock it
    /// everywhere (stops guessing spread over many addresses)
    #[arg(long, global = true, env = "KEYFRAME_LOCKOUT_USER_CEILING", default_value_t = 50,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub lockout_user_ceiling: i64,
    /// A reverse proxy's address range (CIDR, or one address); requests from it are counted
    /// against the last X-Forwarded-For hop instead of the peer (repeatable; comma-separated
    /// in the environment)
    #[arg(long = "trust-proxy", global = true, env = "KEYFRAME_TRUST_PROXY",
          value_delimiter = ',', value_parser = parse_proxy)]
    pub trust_proxy: Vec<ipnet::IpNet>,
    /// Lockout window, in seconds
    #[arg(long, global = true, env = "KEYFRAME_LOCKOUT_WINDOW", default_value_t = 900,
          value_parser = clap::value_parser!(i64).range(1..=86_400))]
    pub lockout_window: i64,
    /// Authorization code lifetime, in seconds
    #[arg(long, global = true, env = "KEYFRAME_AUTHORIZATION_CODE_TTL", default_value_t = 60,
          value_parser = clap::value_parser!(i64).range(1..=600))]
    pub authorization_code_ttl: i64,
    /// Browser session lifetime, in seconds
    #[arg(long, global = true, env = "KEYFRAME_SESSION_TTL", default_value_t = 8 * 3600,
          value_parser = clap::value_parser!(i64).range(60..=30 * 86_400))]
    pub session_ttl: i64,
    /// Longest lifetime of a stream token, in seconds; also forbids tokens without expiry
    /// (ttl 0) [default: no cap, as Flussonic]
    #[arg(long, global = true, env = "KEYFRAME_STREAM_TOKEN_MAX_TTL",
          value_parser = clap::value_parser!(i64).range(1..=crate::tokens::stream::MAX_TTL))]
    pub stream_token_max_ttl: Option<i64>,
    /// Seconds a media server may cache an allowed play (X-AuthDuration; never past the token's
    /// expiry): a revocation reaches plays already admitted within this time
    #[arg(long, global = true, env = "KEYFRAME_STREAM_AUTH_CACHE", default_value_t = 60,
          value_parser = clap::value_parser!(i64).range(1..=86_400))]
    pub stream_auth_cache: i64,
    /// The VideoManager-compatible API under /v1/vms
    #[arg(long, global = true, env = "KEYFRAME_VMS_API", default_value = "on", value_parser = ["on", "off"])]
    pub vms_api: String,
    /// Log filter in tracing's EnvFilter syntax [default: info for serve, error otherwise]
    #[arg(long, global = true, env = "KEYFRAME_LOG")]
    pub log: Option<String>,
    /// Log lines as JSON objects instead of text
    #[arg(long, global = true, env = "KEYFRAME_LOG_JSON")]
    pub log_json: bool,
    /// Print exactly one JSON object (errors: on stderr)
    #[arg(long, global = true)]
    pub json: bool,
    /// 32 bytes (64 hex or 43/44 base64 characters) that encrypt the tenants' URL secrets at
    /// rest; prefer the environment variable, which other users cannot read from the process list
    #[arg(
        long,
        global = true,
        env = "KEYFRAME_SECRET_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub secret_key: Option<RawSecret>,
}

/// A secret as given on the command line or in the environment, parsed later: clap's own
/// parse errors quote the value, ours must not. Its `Debug` never shows it.
#[derive(Clone)]
pub struct RawSecret(String);

impl From<String> for RawSecret {
    fn from(raw: String) -> Self {
        Self(raw)
    }
}

impl std::fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations
    Migrate,
    /// Run the server
    Serve(ServeArgs),
    /// Manage tenants (VideoManagers)
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage users and their tenants
    #[command(subcommand)]
    User(UserCommand),
    /// Manage OAuth clients
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage the token signing keys
    #[command(subcommand)]
    Key(KeyCommand),
    /// Delete expired and revoked tokens, old sign-in failures and retired keys
    Purge,
    /// Check a stream token as a media server does (exit 0: allowed, 1: denied)
    VerifyToken {
        /// The stream token (a JWT of typ stream+jwt)
        token: String,
        /// The stream the token must be for
        #[arg(long)]
        stream: Option<String>,
        /// What is asked of the token
        #[arg(long, value_parser = ["live", "dvr", "copy"])]
        action: Option<String>,
        /// The archive time asked, in unix seconds, checked against the token's window
        #[arg(long, value_name = "UNIX_SECONDS", requires = "action")]
        position: Option<i64>,
        /// The instant to check at, in unix seconds [default: now]
        #[arg(long, value_name = "UNIX_SECONDS")]
        at: Option<i64>,
    },
    /// Check an OvenMediaEngine SignedPolicy URL against a tenant's URL secret (exit 0: allowed,
    /// 1: denied)
    VerifyUrl {
        /// The signed URL, exactly as a player presents it (quote it for the shell)
        url: String,
        /// The tenant whose URL secret signed it
        #[arg(long)]
        tenant: String,
        /// The client address to check against the policy's allow_ip
        #[arg(long)]
        ip: Option<std::net::IpAddr>,
        /// The instant to check at, in unix milliseconds [default: now]
        #[arg(long, value_name = "UNIX_MS")]
        at: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a new current signing key; older keys stay published until their tokens expire
    Rotate,
    /// List signing keys (never their private parts)
    List,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// On an empty database: create a demo tenant, user and client and print them once
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant
    Create {
        /// A short slug: [a-z0-9][a-z0-9-]{0,62}
        id: String,
        #[arg(long)]
        name: String,
    },
    /// List tenants
    List,
    /// Make or replace the tenant's secret for OvenMediaEngine's SignedPolicy URLs
    #[command(group(clap::ArgGroup::new("how").required(true).args(["rotate", "set_stdin"])))]
    UrlSecret {
        /// The tenant's id
        tenant: String,
        /// Generate a new random secret and print it once
        #[arg(long)]
        rotate: bool,
        /// Store the first line of standard input (an existing OvenMediaEngine SecretKey)
        #[arg(long)]
        set_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is the first line of standard input
    Create {
        username: String,
        #[arg(long, required = true)]
        password_stdin: bool,
        /// ID or ID:ROLE (owner, admin, member; default member); the first is the default tenant
        #[arg(long = "tenant", value_name = "ID[:ROLE]")]
        tenants: Vec<String>,
    },
    /// List users with their tenants
    List,
    /// Make a user a member of a tenant
    AddTenant {
        username: String,
        tenant: String,
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// End a user's membership in a tenant
    RemoveTenant { username: String, tenant: String },
    /// Disable a user: no sign-in, no refresh
    Disable { username: String },
    /// Enable a disabled user again
    Enable { username: String },
    /// Set a user's password from the first line of standard input
    SetPassword {
        username: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; a confidential client's secret is printed once
    Create {
        #[arg(long)]
        name: String,
        /// A public client (no secret; PKCE required)
        #[arg(long)]
        public: bool,
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// authorization_code, refresh_token or password [default: authorization_code and refresh_token]
        #[arg(long = "grant-type", value_name = "GRANT")]
        grant_types: Vec<String>,
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// required or optional (optional only for confidential clients)
        #[arg(long, value_name = "MODE")]
        pkce: Option<String>,
    },
    /// List clients (never their secrets)
    List,
    /// Delete a client
    Delete {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

/// The cores this process may run on: `available_parallelism` respects CPU affinity, so a
/// server pinned to one core sizes its pools for one.
pub fn usable_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// SQLite has one writer at a time and runs in this process, so connections beyond the cores
/// only add page caches and threads (on one core, 3 connections served refreshes 20% faster
/// than 10, in 5 MB less). PostgreSQL connections wait on the network and the server.
fn default_pool_size(url: &DatabaseUrl) -> u32 {
    match url {
        DatabaseUrl::Sqlite { .. } => 2 + u32::try_from(usable_cores()).unwrap_or(62).min(62),
        DatabaseUrl::Postgres { .. } => 10,
    }
}

/// The validated settings the rest of Keyframe works from.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub listen: String,
    /// `None`: derived from the address actually bound.
    pub issuer: Option<String>,
    pub max_body_bytes: usize,
    pub db_pool_size: u32,
    pub sqlite_max_log_bytes: u64,
    pub tokens: TokenSettings,
    pub vms_api: bool,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Seals the tenants' URL secrets at rest; `None`: they are stored as given.
    pub secret_key: Option<SecretKey>,
}

/// Lifetimes and limits of the token service, in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// `None`: the issuer.
    pub audience: Option<String>,
    pub access_token_ttl: i64,
    pub refresh_token_ttl: i64,
    pub refresh_token_idle_ttl: i64,
    pub refresh_reuse_grace: i64,
    pub lockout_threshold: i64,
    pub lockout_user_ceiling: i64,
    pub lockout_window: i64,
    /// Browser sign-in sessions.
    pub session_ttl: i64,
    pub authorization_code_ttl: i64,
    /// `--stream-token-max-ttl`: `None` lets ttl be anything, 0 (no expiry) included.
    pub stream_token_max_ttl: Option<i64>,
    /// `--stream-auth-cache`.
    pub stream_auth_cache: i64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            audience: None,
            access_token_ttl: 600,
            refresh_token_ttl: 30 * 86_400,
            refresh_token_idle_ttl: 14 * 86_400,
            refresh_reuse_grace: 0,
            lockout_threshold: 5,
            lockout_user_ceiling: 50,
            lockout_window: 900,
            session_ttl: 8 * 3600,
            authorization_code_ttl: 60,
            stream_token_max_ttl: None,
            stream_auth_cache: 60,
        }
    }
}

impl Config {
    pub fn from_args(args: &GlobalArgs) -> Result<Self, Error> {
        let database_url = DatabaseUrl::parse(&args.database_url)
            .map_err(|e| Error::Config(format!("invalid --database-url: {e}")))?;
        let listen = args.listen.trim().to_owned();
        let resolves = listen
            .to_socket_addrs()
            .map(|mut a| a.next().is_some())
            .unwrap_or(false);
        if !resolves {
            return Err(Error::Config(format!(
                "invalid --listen {listen:?}: expected HOST:PORT, for example 127.0.0.1:8080"
            )));
        }
        let issuer = args.issuer.as_deref().map(parse_issuer).transpose()?;
        if args.max_body_bytes < 1024 {
            return Err(Error::Config(
                "invalid --max-body-bytes: at least 1024".into(),
            ));
        }
        let db_pool_size = args
            .db_pool_size
            .unwrap_or_else(|| default_pool_size(&database_url));
        let secret_key = args
            .secret_key
            .as_ref()
            .map(|raw| {
                SecretKey::parse(&raw.0).map_err(|why| {
                    Error::Config(format!("invalid --secret-key (KEYFRAME_SECRET_KEY): {why}"))
                })
            })
            .transpose()?;
        Ok(Self {
            database_url,
            listen,
            issuer,
            max_body_bytes: args.max_body_bytes,
            db_pool_size,
            sqlite_max_log_bytes: args.sqlite_max_log_mb * 1024 * 1024,
            vms_api: args.vms_api == "on",
            trusted_proxies: args.trust_proxy.clone(),
            secret_key,
            tokens: TokenSettings {
                audience: args
                    .audience
                    .as_deref()
                    .map(validate_audience)
                    .transpose()?,
                access_token_ttl: args.access_token_ttl,
                refresh_token_ttl: args.refresh_token_ttl,
                refresh_token_idle_ttl: args.refresh_token_idle_ttl,
                refresh_reuse_grace: args.refresh_reuse_grace,
                lockout_threshold: args.lockout_threshold,
                lockout_user_ceiling: args.lockout_user_ceiling,
                lockout_window: args.lockout_window,
                session_ttl: args.session_ttl,
                authorization_code_ttl: args.authorization_code_ttl,
                stream_token_max_ttl: args.stream_token_max_ttl,
                stream_auth_cache: args.stream_auth_cache,
            },
        })
    }
}

/// A CIDR range, or a single address (a /32 or /128).
fn parse_proxy(raw: &str) -> Result<ipnet::IpNet, Error> {
    let raw = raw.trim();
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| {
            Error::Config(format!(
                "{raw:?} is not an address range such as 10.0.0.0/8 or ::1"
            ))
        })
}

fn validate_audience(raw: &str) -> Result<String, Error> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.chars().any(char::is_control) {
        return Err(Error::Config(format!("invalid --audience {raw:?}")));
    }
    Ok(trimmed.to_owned())
}

/// An issuer is an http(s) URL without query or fragment (RFC 8414 §2); kept without a trailing
/// slash so that `iss` and the metadata compare equal as strings.
pub fn parse_issuer(raw: &str) -> Result<String, Error> {
    let parsed = url::Url::parse(raw)
        .map_err(|e| Error::Config(format!("invalid --issuer {raw:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(Error::Config(format!(
            "invalid --issuer {raw:?}: use an http or https URL"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(Error::Config(format!(
            "invalid --issuer {raw:?}: no query or fragment allowed"
        )));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_are_http_urls_without_query() {
        assert_eq!(
            parse_issuer("https://auth.example/").ok().as_deref(),
            Some("https://auth.example")
        );
        assert_eq!(
            parse_issuer("https://auth.example/kf").ok().as_deref(),
            Some("https://auth.example/kf")
        );
        for bad in [
            "auth.example",
            "ftp://auth.example",
            "https://auth.example/?a=1",
            "https://a.example#x",
        ] {
            assert!(parse_issuer(bad).is_err(), "{bad}");
        }
    }

    fn config_of(args: &[&str]) -> Result<Config, Error> {
        let cli = Cli::try_parse_from([&["keyframe"][..], args, &["tenant", "list"]].concat())
            .expect("arguments");
        Config::from_args(&cli.global)
    }

    #[test]
    fn the_secret_key_is_parsed_once_and_never_echoed() {
        let hex = "ab".repeat(32);
        let key = config_of(&["--secret-key", &hex])
            .expect("config")
            .secret_key;
        assert!(key.is_some());
        assert_eq!(format!("{key:?}"), "Some([redacted])");
        for bad in ["hunter2", &"hunter2!".repeat(8), &"ab".repeat(31)] {
            match config_of(&["--secret-key", bad]) {
                Err(Error::Config(message)) => {
                    assert!(message.contains("KEYFRAME_SECRET_KEY"), "{message}");
                    assert!(!message.contains(bad), "{message}");
                }
                other => panic!("{bad}: expected a configuration error, got {other:?}"),
            }
        }
        // Nor does the parsed command line show it.
        let cli = Cli::try_parse_from(["keyframe", "--secret-key", &hex, "tenant", "list"])
            .expect("arguments");
        assert!(!format!("{cli:?}").contains(&hex));
    }

    #[test]
    fn the_pool_size_defaults_by_backend() {
        let pg = DatabaseUrl::parse("postgres://db/kf").expect("pg");
        assert_eq!(default_pool_size(&pg), 10);
        let sqlite = DatabaseUrl::parse("kf.db").expect("sqlite");
        assert_eq!(default_pool_size(&sqlite) as usize, 2 + usable_cores());
    }

    #[test]
    fn database_urls_select_the_backend() {
        let pg = DatabaseUrl::parse("postgres://u:secret@db/kf").expect("pg");
        assert_eq!(pg.backend_name(), "postgres");
        assert!(!pg.to_string().contains("secret"), "{pg}");
        assert_eq!(
            DatabaseUrl::parse("postgresql://db/kf")
                .map(|u| u.backend_name())
                .ok(),
            Some("postgres")
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/kf.db").ok(),
            Some(DatabaseUrl::Sqlite {
                path: "data/kf.db".into()
            })
        );
        assert_eq!(
            DatabaseUrl::parse("kf.db").ok(),
            Some(DatabaseUrl::Sqlite {
                path: "kf.db".into()
            })
        );
        for bad in ["", "mysql://db/kf", "sqlite://", ":memory:"] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
