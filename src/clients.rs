//! OAuth clients: who may ask for tokens, how they authenticate, and what they may ask for.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::db::{self, Conn};
use crate::error::Error;
use crate::secrets::{self, PlainSecret};

pub const CLIENT_SECRET_PREFIX: &str = "kf_cs_";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    Password,
    /// RFC 8693, for trading an API token for a short-lived JWT.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::Password => "password",
            GrantType::TokenExchange => TOKEN_EXCHANGE,
        }
    }
}

impl FromStr for GrantType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "authorization_code" => Ok(GrantType::AuthorizationCode),
            "refresh_token" => Ok(GrantType::RefreshToken),
            "password" => Ok(GrantType::Password),
            TOKEN_EXCHANGE => Ok(GrantType::TokenExchange),
            other => Err(Error::Invalid(format!(
                "unknown grant type {other:?}: use authorization_code, refresh_token, password or {TOKEN_EXCHANGE}"
            ))),
        }
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pkce {
    Required,
    Optional,
}

impl FromStr for Pkce {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "required" => Ok(Pkce::Required),
            "optional" => Ok(Pkce::Optional),
            other => Err(Error::Invalid(format!(
                "unknown PKCE mode {other:?}: use required or optional"
            ))),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub pkce: Pkce,
    pub created_at: i64,
}

/// What an operator asks for; validated by [`create`].
#[derive(Debug, Default)]
pub struct NewClient {
    pub name: String,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub pkce: Option<String>,
}

/// A scope token as RFC 6749 §3.3 defines it: printable ASCII without space, `"` or `\`.
pub fn validate_scope_token(scope: &str) -> Result<(), Error> {
    let valid = !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
    if valid {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "invalid scope {scope:?}: printable ASCII without spaces, quotes or backslashes"
        )))
    }
}

/// Redirect URIs are absolute and carry no fragment (RFC 6749 §3.1.2); they are stored as given
/// and later compared as exact strings (RFC 9700 §4.1.3).
pub fn validate_redirect_uri(uri: &str) -> Result<(), Error> {
    let parsed = url::Url::parse(uri).map_err(|e| {
        Error::Invalid(format!(
            "invalid redirect URI {uri:?}: not an absolute URI ({e})"
        ))
    })?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(Error::Invalid(format!(
            "invalid redirect URI {uri:?}: it must not have a fragment"
        )));
    }
    if uri.len() > 2000 || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Invalid(format!("invalid redirect URI {uri:?}")));
    }
    // A code sent over plain http can be read on the way; only a loopback listener (a native
    // app's, RFC 8252 §7.3) never leaves the machine (RFC 9700 §2.1).
    if parsed.scheme() == "http" {
        let loopback = match parsed.host() {
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
            Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
            None => false,
        };
        if !loopback {
            return Err(Error::Invalid(format!(
                "invalid redirect URI {uri:?}: http is allowed only for loopback (127.0.0.1, [::1], localhost); use https"
            )));
        }
    }
    // Schemes that run or embed content in the browser instead of reaching an application.
    if matches!(
        parsed.scheme(),
        "javascript" | "data" | "vbscript" | "file" | "blob"
    ) {
        return Err(Error::Invalid(format!(
            "invalid redirect URI {uri:?}: the {} scheme cannot receive a code",
            parsed.scheme()
        )));
    }
    Ok(())
}

fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// 128 random bits, starting with a letter or digit: an id that starts with `-` reads as a
/// flag on a command line.
fn new_client_id() -> String {
    loop {
        let id = secrets::random_id();
        if id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return id;
        }
    }
}

/// Registers a client. A confidential client's secret is returned here and never again.
pub async fn create(
    conn: &mut Conn,
    new: NewClient,
    now: i64,
) -> Result<(Client, Option<PlainSecret>), Error> {
    let name = crate::tenants::validate_display_name("client", &new.name)?;
    let grant_types = if new.grant_types.is_empty() {
        // The password grant is legacy (RFC 9700 §2.4): a client gets it only when named.
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
    } else {
        dedup(
            new.grant_types
                .iter()
                .map(|g| g.parse())
                .collect::<Result<Vec<GrantType>, _>>()?,
        )
    };
    for uri in &new.redirect_uris {
        validate_redirect_uri(uri)?;
    }
    let redirect_uris = dedup(new.redirect_uris);
    if grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        return Err(Error::Invalid(
            "the authorization_code grant needs at least one --redirect-uri".into(),
        ));
    }
    for scope in &new.scopes {
        validate_scope_token(scope)?;
    }
    let scopes = dedup(new.scopes);
    let pkce = match new.pkce.as_deref() {
        None => Pkce::Required,
        Some(p) => p.parse()?,
    };
    if new.public && pkce == Pkce::Optional {
        // A public client has no secret: PKCE is all that binds its code to it.
        return Err(Error::Invalid(
            "a public client must use PKCE: --pkce optional needs a confidential client".into(),
        ));
    }
    let secret = (!new.public).then(|| PlainSecret::generate(CLIENT_SECRET_PREFIX));
    let client = Client {
        client_id: new_client_id(),
        name,
        public: new.public,
        redirect_uris,
        grant_types,
        scopes,
        pkce,
        created_at: now,
    };
    db::clients::insert(
        conn,
        &client,
        secret.as_ref().map(PlainSecret::digest).as_deref(),
    )
    .await?;
    Ok((client, secret))
}

pub async fn list(conn: &mut Conn) -> Result<Vec<Client>, Error> {
    db::clients::list(conn).await
}

pub async fn find(conn: &mut Conn, client_id: &str) -> Result<Option<Client>, Error> {
    Ok(db::clients::find(conn, client_id)
        .await?
        .map(|(client, _)| client))
}

/// Every scope some client is registered for, sorted: the server's `scopes_supported`.
pub async fn all_scopes(conn: &mut Conn) -> Result<Vec<String>, Error> {
    let mut scopes: Vec<String> = list(conn)
        .await?
        .into_iter()
        .flat_map(|c| c.scopes)
        .collect();
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// The client if `secret` is right for it: a confidential client must present its secret, a
/// public client must present none. Comparison is constant-time on the digest.
pub async fn authenticate(
    conn: &mut Conn,
    known: &KnownClients,
    client_id: &str,
    secret: Option<&str>,
) -> Result<Option<Client>, Error> {
    let Some(found) = known.find(conn, client_id).await? else {
        return Ok(None);
    };
    let ok = match (found.client.public, secret, &found.digest) {
        (true, None, _) => true,
        (false, Some(secret), Some(digest)) => secrets::matches_digest(secret, digest),
        _ => false,
    };
    Ok(ok.then(|| found.client.clone()))
}

/// How long an instance trusts a client row it has read: a deleted client, or a changed
/// secret, takes effect on every running instance within this time.
const CLIENT_RECHECK: Duration = Duration::from_secs(1);
/// Clients remembered per instance; unknown ids are never remembered.
const KNOWN_CLIENTS_CAPACITY: usize = 1024;

/// The clients this instance authenticated lately. Every call to the token, introspection and
/// revocation endpoints authenticates its client; on PostgreSQL reading the row each time was
/// a network round trip per request.
pub struct KnownClients {
    cache: quick_cache::sync::Cache<String, Arc<KnownClient>>,
}

struct KnownClient {
    client: Client,
    digest: Option<String>,
    read_at: Instant,
}

impl Default for KnownClients {
    fn default() -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(KNOWN_CLIENTS_CAPACITY),
        }
    }
}

impl KnownClients {
    /// The client Keyframe acts as behind its own first-party APIs, created when missing and
    /// remembered like the others: the VideoManager API needs it on every request, and on
    /// PostgreSQL each read is a round trip. Its secret is generated and thrown away: nobody
    /// can use it at the token endpoint.
    pub async fn builtin(
        &self,
        conn: &mut Conn,
        client_id: &str,
        name: &str,
        grant_types: &[GrantType],
        now: i64,
    ) -> Result<Client, Error> {
        if let Some(known) = self.find(conn, client_id).await? {
            return Ok(known.client.clone());
        }
        let client = Client {
            client_id: client_id.to_owned(),
            name: name.to_owned(),
            public: false,
            redirect_uris: Vec::new(),
            grant_types: grant_types.to_vec(),
            scopes: Vec::new(),
            pkce: Pkce::Required,
            created_at: now,
        };
        let unusable = PlainSecret::generate(CLIENT_SECRET_PREFIX);
        match db::clients::insert(conn, &client, Some(&unusable.digest())).await {
            Ok(()) => Ok(client),
            // Another instance created it at the same moment.
            Err(Error::Database(e)) if db::is_unique_violation(&e) => Ok(client),
            Err(e) => Err(e),
        }
    }

    async fn find(
        &self,
        conn: &mut Conn,
        client_id: &str,
    ) -> Result<Option<Arc<KnownClient>>, Error> {
        if let Some(known) = self.cache.get(client_id) {
            if known.read_at.elapsed() < CLIENT_RECHECK {
                return Ok(Some(known));
            }
        }
        match db::clients::find(conn, client_id).await? {
            Some((client, digest)) => {
                let known = Arc::new(KnownClient {
                    client,
                    digest,
                    read_at: Instant::now(),
                });
                self.cache.insert(client_id.to_owned(), known.clone());
                Ok(Some(known))
            }
            None => {
                self.cache.remove(client_id);
                Ok(None)
            }
        }
    }
}

impl Client {
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

pub async fn delete(conn: &mut Conn, client_id: &str) -> Result<(), Error> {
    if db::clients::delete(conn, client_id).await? {
        Ok(())
    } else {
        Err(Error::NotFound(format!("unknown client {client_id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_never_start_like_a_flag() {
        for _ in 0..2000 {
            let id = new_client_id();
            assert!(id.starts_with(|c: char| c.is_ascii_alphanumeric()), "{id}");
            assert_eq!(id.len(), 22);
        }
    }

    #[test]
    fn scope_tokens_follow_rfc_6749() {
        for ok in ["openid", "video:read", "a!#[]~"] {
            assert!(validate_scope_token(ok).is_ok(), "{ok}");
        }
        for bad in ["", "two words", "quo\"te", "back\\slash", "ümlaut"] {
            assert!(validate_scope_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_uris_are_absolute_https_or_loopback_without_fragment() {
        for ok in [
            "https://app.example/cb",
            "http://127.0.0.1:8000/cb?x=1",
            "http://[::1]:8000/cb",
            "http://localhost:8000/cb",
            "http://LOCALHOST/cb",
            "com.example.app:/oauth",
        ] {
            assert!(validate_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/relative",
            "app.example/cb",
            "https://app.example/cb#frag",
            "https://app.example/cb#",
            "",
            "http://app.example/cb",
            "http://127.0.0.2/cb",
            "http://localhost.evil.example/cb",
            "http://[::2]/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
        ] {
            assert!(validate_redirect_uri(bad).is_err(), "{bad}");
        }
    }
}
