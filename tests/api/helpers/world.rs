//! Seeded worlds: the app on a fresh database with tenants, users and clients created through
//! the real CLI (what is tested stays real), and what a test does in them.
//!
//! ```text
//! let w = World::builder(backend)
//!     .tenant("acme", "Acme Video")
//!     .user("olivia", "olivia-pw", &["acme:owner"])
//!     .client(ClientSpec::confidential("Backend").grants(&["password"]).scopes(&["read"]))
//!     .config(|cfg| cfg.tokens.lockout_threshold = 3)
//!     .build()
//!     .await;
//! ```

use keyframe::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{Answer, Backend, TestApp, TestClient, TestDb, ACCESS_TOKEN_TYPE, EXCHANGE};

pub const ALICE_PASSWORD: &str = "correct horse battery staple";

/// A client to register: `keyframe client create` with these options.
#[derive(Debug, Clone, Default)]
pub struct ClientSpec {
    pub name: String,
    pub public: bool,
    /// `--grant-type` values; none for the CLI's default (authorization code and refresh).
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub redirect_uris: Vec<String>,
}

fn owned(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

impl ClientSpec {
    pub fn confidential(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    pub fn public(name: &str) -> Self {
        Self {
            public: true,
            ..Self::confidential(name)
        }
    }

    pub fn grants(self, grant_types: &[&str]) -> Self {
        Self {
            grant_types: owned(grant_types),
            ..self
        }
    }

    pub fn scopes(self, scopes: &[&str]) -> Self {
        Self {
            scopes: owned(scopes),
            ..self
        }
    }

    pub fn redirect_uris(self, redirect_uris: &[&str]) -> Self {
        Self {
            redirect_uris: owned(redirect_uris),
            ..self
        }
    }

    /// The arguments of `keyframe --json client create` for this client.
    pub fn args(&self) -> Vec<&str> {
        let mut args = vec!["--json", "client", "create", "--name", &self.name];
        if self.public {
            args.push("--public");
        }
        for (option, values) in [
            ("--grant-type", &self.grant_types),
            ("--scope", &self.scopes),
            ("--redirect-uri", &self.redirect_uris),
        ] {
            for value in values {
                args.extend([option, value.as_str()]);
            }
        }
        args
    }
}

impl TestApp {
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

    pub async fn create_client(&self, spec: ClientSpec) -> TestClient {
        let client = self.cli(&spec.args(), None).await.json();
        let secret = client["client_secret"].as_str().map(str::to_owned);
        assert_eq!(secret.is_none(), spec.public, "{client}");
        TestClient {
            id: client["client_id"].as_str().expect("client_id").to_owned(),
            secret,
        }
    }
}

struct UserSpec {
    name: String,
    password: String,
    tenants: Vec<String>,
}

/// What [`World::build`] seeds: see [`World::builder`].
pub struct WorldBuilder {
    backend: Backend,
    tenants: Vec<(String, String)>,
    users: Vec<UserSpec>,
    clients: Vec<ClientSpec>,
    settings: Vec<Setting>,
}

/// One change to the server's configuration.
type Setting = Box<dyn Fn(&mut Config)>;

impl WorldBuilder {
    pub fn tenant(mut self, id: &str, name: &str) -> Self {
        self.tenants.push((id.to_owned(), name.to_owned()));
        self
    }

    /// A user with these `--tenant` values (`id` or `id:role`; the first is the default).
    pub fn user(mut self, name: &str, password: &str, tenants: &[&str]) -> Self {
        self.users.push(UserSpec {
            name: name.to_owned(),
            password: password.to_owned(),
            tenants: owned(tenants),
        });
        self
    }

    pub fn client(mut self, spec: ClientSpec) -> Self {
        self.clients.push(spec);
        self
    }

    /// A change to the server's configuration (several add up, in order).
    pub fn config(mut self, adjust: impl Fn(&mut Config) + 'static) -> Self {
        self.settings.push(Box::new(adjust));
        self
    }

    /// Tenants acme ("Acme Video") and beta ("Beta Live"), and alice with `password`, who owns
    /// acme (her default) and is a member of beta.
    pub fn alice_in_acme_and_beta(self, password: &str) -> Self {
        self.tenant("acme", "Acme Video")
            .tenant("beta", "Beta Live")
            .user("alice", password, &["acme:owner", "beta"])
    }

    /// Starts the app on a fresh database, then seeds it through the CLI: the tenants first,
    /// then users and clients, each group at once (the CLI's writers wait their turn).
    pub async fn build(self) -> World {
        let settings = self.settings;
        let app = TestApp::spawn_on(TestDb::new(self.backend), &|cfg| {
            settings.iter().for_each(|adjust| adjust(cfg))
        })
        .await;
        futures_util::future::join_all(
            self.tenants
                .iter()
                .map(|(id, name)| app.create_tenant(id, name)),
        )
        .await;
        let users = futures_util::future::join_all(self.users.iter().map(|user| {
            let tenants: Vec<&str> = user.tenants.iter().map(String::as_str).collect();
            let app = &app;
            async move { app.create_user(&user.name, &user.password, &tenants).await }
        }));
        let clients =
            futures_util::future::join_all(self.clients.into_iter().map(|c| app.create_client(c)));
        let (ids, clients) = futures_util::future::join(users, clients).await;
        let users = self
            .users
            .into_iter()
            .zip(ids)
            .map(|(user, id)| SeededUser {
                name: user.name,
                password: user.password,
                id,
            })
            .collect();
        World {
            app,
            clients,
            users,
        }
    }
}

struct SeededUser {
    name: String,
    password: String,
    id: String,
}

/// The app with what was seeded into it. "The user" and "the client" of the shortcuts below are
/// the first of each given to the builder.
pub struct World {
    pub app: TestApp,
    /// In the order given to the builder.
    pub clients: Vec<TestClient>,
    users: Vec<SeededUser>,
}

impl World {
    pub fn builder(backend: Backend) -> WorldBuilder {
        WorldBuilder {
            backend,
            tenants: Vec::new(),
            users: Vec::new(),
            clients: Vec::new(),
            settings: Vec::new(),
        }
    }

    /// The token service's world: tenants acme and beta as in
    /// [`WorldBuilder::alice_in_acme_and_beta`] (alice's password is [`ALICE_PASSWORD`]) and
    /// gamma ("Gamma", not hers); a confidential client with the password and refresh grants
    /// and the scopes `read` and `write`.
    pub fn token_service(backend: Backend) -> WorldBuilder {
        Self::builder(backend)
            .alice_in_acme_and_beta(ALICE_PASSWORD)
            .tenant("gamma", "Gamma")
            .client(
                ClientSpec::confidential("Backend")
                    .grants(&["password", "refresh_token"])
                    .scopes(&["read", "write"]),
            )
    }

    /// The API tokens' world: tenants acme ("Acme") and beta ("Beta"); olivia (`olivia-pw`) owns
    /// acme and is a member of beta, max (`max-pw`) is a member of acme; a first-party
    /// confidential client with the password and token-exchange grants and `keyframe:tokens`
    /// (its access tokens may manage API tokens).
    pub fn api_tokens(backend: Backend) -> WorldBuilder {
        Self::builder(backend)
            .tenant("acme", "Acme")
            .tenant("beta", "Beta")
            .user("olivia", "olivia-pw", &["acme:owner", "beta"])
            .user("max", "max-pw", &["acme:member"])
            .client(
                ClientSpec::confidential("Backend")
                    .grants(&["password", EXCHANGE])
                    .scopes(&["keyframe:tokens"]),
            )
    }

    /// The browser flow's world: tenants acme and beta with alice (`alice-pw`) as in
    /// [`WorldBuilder::alice_in_acme_and_beta`], and the public client "Portal App" with these
    /// redirect URIs and scopes (and the CLI's default grants).
    pub fn portal(backend: Backend, redirect_uris: &[&str], scopes: &[&str]) -> WorldBuilder {
        Self::builder(backend)
            .alice_in_acme_and_beta("alice-pw")
            .client(
                ClientSpec::public("Portal App")
                    .redirect_uris(redirect_uris)
                    .scopes(scopes),
            )
    }

    /// The first client given to the builder.
    pub fn client(&self) -> &TestClient {
        self.clients.first().expect("a world with a client")
    }

    fn user(&self, name: &str) -> &SeededUser {
        self.users
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("no user {name} in this world"))
    }

    pub fn user_id(&self, name: &str) -> &str {
        &self.user(name).id
    }

    /// The first user signs in with the password grant at the first client.
    pub async fn password(&self, extra: &[(&str, &str)]) -> Answer {
        let user = self.users.first().expect("a world with a user");
        self.app
            .password_grant(self.client(), &user.name, &user.password, extra)
            .await
    }

    /// A successful sign-in.
    pub async fn sign_in(&self, extra: &[(&str, &str)]) -> Answer {
        self.password(extra).await.ok()
    }

    /// The first user signs in at `client` (a successful password grant).
    pub async fn sign_in_at(&self, client: &TestClient, extra: &[(&str, &str)]) -> Answer {
        let user = self.users.first().expect("a world with a user");
        self.app
            .password_grant(client, &user.name, &user.password, extra)
            .await
            .ok()
    }

    /// `username`'s access token for `tenant`, by the password grant at the first client.
    pub async fn access_token(&self, username: &str, tenant: &str) -> String {
        let password = &self.user(username).password;
        self.app
            .password_grant(self.client(), username, password, &[("tenant", tenant)])
            .await
            .access_token()
    }

    pub async fn refresh(&self, refresh_token: &str, extra: &[(&str, &str)]) -> Answer {
        self.app.refresh(self.client(), refresh_token, extra).await
    }

    pub async fn introspect(&self, token: &str) -> Value {
        self.app.introspect(self.client(), token).await
    }

    /// Whether introspection by the first client calls the token active; an inactive answer
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

    /// A successful `--json` CLI command on the world's database.
    pub async fn cli(&self, args: &[&str]) -> Value {
        self.app.cli(args, None).await.json()
    }

    // -----------------------------------------------------------------------------------------
    // API tokens.

    /// A call on the API whose body must be JSON when there is one (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let answer = self.app.bearer(method, path, bearer, body).await;
        assert!(
            answer.text.is_empty() || !answer.body.is_null(),
            "not JSON: {}",
            answer.text
        );
        (answer.status, answer.body)
    }

    pub async fn create(&self, tenant: &str, bearer: &str, body: Value) -> (StatusCode, Value) {
        let path = format!("/api/v1/tenants/{tenant}/tokens");
        self.call(Method::POST, &path, bearer, Some(body)).await
    }

    pub async fn list(&self, tenant: &str, bearer: &str) -> (StatusCode, Value) {
        let path = format!("/api/v1/tenants/{tenant}/tokens");
        self.call(Method::GET, &path, bearer, None).await
    }

    /// A personal API token of acme's, created by `bearer`'s user (201 expected).
    pub async fn personal_token(&self, bearer: &str, name: &str) -> Value {
        self.created(bearer, json!({"name": name, "kind": "personal"}))
            .await
    }

    /// A system API token of acme's with these roles, created as `bearer` (201 expected).
    pub async fn system_token(&self, bearer: &str, name: &str, roles: &[&str]) -> Value {
        self.created(
            bearer,
            json!({"name": name, "kind": "system", "roles": roles}),
        )
        .await
    }

    async fn created(&self, bearer: &str, body: Value) -> Value {
        let (status, token) = self.create("acme", bearer, body).await;
        assert_eq!(status, StatusCode::CREATED, "{token}");
        token
    }

    /// A token exchange by the first client, with `extra` form fields.
    pub async fn exchange_with(
        &self,
        subject: &str,
        subject_type: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut fields = vec![
            ("grant_type", EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", subject_type),
        ];
        fields.extend_from_slice(extra);
        self.app
            .post_form("/oauth/token", self.client().auth(), &fields)
            .await
    }

    /// An API token traded for a JWT.
    pub async fn exchange(&self, api_token: &str) -> Answer {
        self.exchange_with(api_token, ACCESS_TOKEN_TYPE, &[]).await
    }
}

/// The secret of a newly created or renewed API token.
pub fn secret(body: &Value) -> String {
    body["token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {body}"))
        .to_owned()
}

/// The ids of a token list, sorted.
pub fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

/// The path of one API token of acme's.
pub fn token_path(token: &Value) -> String {
    format!(
        "/api/v1/tenants/acme/tokens/{}",
        token["id"].as_str().expect("id")
    )
}
