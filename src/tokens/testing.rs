//! A token service on a real SQLite file for the unit tests of every token kind: tenants acme
//! (alice is owner) and beta (member), a client with the password and refresh grants.

use super::{GrantRequest, TokenResponse, TokenService};
use crate::clients::{self, Client, NewClient};
use crate::config::TokenSettings;
use crate::db::{Conn, DatabaseUrl, Db, Store};
use crate::tenants::{self, TenantId};
use crate::tokens::error::OAuthError;
use crate::users;

pub const T0: i64 = 1_800_000_000;

/// The SQLite store's futures finish without waiting on anything: the tests run them here.
pub use futures_executor::block_on;

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub db: Store,
    pub service: TokenService,
    pub client: Client,
}

pub fn fixture(settings: TokenSettings) -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let url = DatabaseUrl::parse(&dir.path().join("kf.db").display().to_string()).expect("url");
    let db = Db::connect(&url, &crate::db::DbOptions::pool(2)).expect("db");
    db.migrate().expect("migrate");
    let db = Store::over(db, 2).expect("store");
    let (db, service, client) = block_on(seed(db, settings));
    Fixture {
        _dir: dir,
        db,
        service,
        client,
    }
}

async fn seed(db: Store, settings: TokenSettings) -> (Store, TokenService, Client) {
    let mut conn = db.conn().await.expect("conn");
    tenants::create(&mut conn, "acme", "Acme", T0)
        .await
        .expect("tenant");
    tenants::create(&mut conn, "beta", "Beta", T0)
        .await
        .expect("tenant");
    let roles = [
        (TenantId::parse("acme").expect("id"), users::Role::Owner),
        (TenantId::parse("beta").expect("id"), users::Role::Member),
    ];
    users::create(&mut conn, "alice", "pw", &roles, T0)
        .await
        .expect("user");
    let (client, _) = clients::create(
        &mut conn,
        NewClient {
            name: "App".into(),
            grant_types: vec!["password".into(), "refresh_token".into()],
            scopes: vec!["read".into(), "write".into()],
            ..NewClient::default()
        },
        T0,
    )
    .await
    .expect("client");
    let service = TokenService::new(&mut conn, "https://kf.example".into(), settings, T0)
        .await
        .expect("service");
    drop(conn);
    (db, service, client)
}

impl Fixture {
    pub fn conn(&self) -> Conn {
        block_on(self.db.conn()).expect("conn")
    }

    pub fn password(&self, password: &str, now: i64) -> Result<TokenResponse, OAuthError> {
        self.password_from("192.0.2.1", password, now)
    }

    pub fn password_from(
        &self,
        source: &str,
        password: &str,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let mut conn = self.conn();
        let request = GrantRequest::Password {
            username: "Alice".into(),
            password: password.into(),
            scope: None,
            tenant: None,
            source: source.into(),
        };
        block_on(self.service.grant(&mut conn, &self.client, request, now))
    }

    pub fn refresh(&self, token: &str, now: i64) -> Result<TokenResponse, OAuthError> {
        let mut conn = self.conn();
        let request = GrantRequest::Refresh {
            refresh_token: token.into(),
            scope: None,
            tenant: None,
        };
        block_on(self.service.grant(&mut conn, &self.client, request, now))
    }

    pub fn active(&self, token: &str, now: i64) -> bool {
        let mut conn = self.conn();
        let answer = block_on(self.service.introspect(&mut conn, &self.client, token, now))
            .expect("introspect");
        answer["active"] == true
    }
}

pub fn refresh_token(response: &TokenResponse) -> String {
    response.refresh_token.clone().expect("refresh token")
}
