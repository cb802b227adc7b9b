//! The client side of a test: requests as an OAuth 2.0 client, a resource server or an API
//! caller sends them, the answers, and the real `keyframe` binary for the CLI.

use std::process::Stdio;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

use super::TestApp;

pub const KEYFRAME: &str = env!("CARGO_BIN_EXE_keyframe");

/// RFC 8693 token exchange.
pub const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

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
    keyframe_with_env(database_url, &[], args, stdin).await
}

/// Runs the real binary with `env` set in its environment (on top of the test's, less the
/// `KEYFRAME_*` settings a test controls, so that a developer's own do not leak in).
pub async fn keyframe_with_env(
    database_url: &str,
    env: &[(&str, &str)],
    args: &[&str],
    stdin: Option<&str>,
) -> Run {
    let mut child = tokio::process::Command::new(KEYFRAME)
        .args(args)
        .env("KEYFRAME_DATABASE_URL", database_url)
        .env_remove("KEYFRAME_LOG")
        .env_remove("KEYFRAME_SECRET_KEY")
        .envs(env.iter().copied())
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
    /// Sends `request` and reads the whole answer.
    pub async fn send(request: reqwest::RequestBuilder) -> Self {
        Self::from(request.send().await.expect("request")).await
    }

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

    /// A 401 `invalid_client` (see [`Answer::assert_error`]); `what` names the case.
    #[track_caller]
    pub fn assert_invalid_client(&self, what: &str) {
        let status = reqwest::StatusCode::UNAUTHORIZED;
        assert_eq!(self.status, status, "{what}: {}", self.text);
        self.assert_error(status, "invalid_client");
    }

    /// A 400 with this error code (see [`Answer::assert_error`]).
    #[track_caller]
    pub fn assert_400(&self, error: &str) {
        self.assert_error(reqwest::StatusCode::BAD_REQUEST, error);
    }

    pub fn description(&self) -> &str {
        self.body["error_description"].as_str().unwrap_or("")
    }

    /// What a snapshot of an error answer holds: the status, the headers an RFC asks of it
    /// (`WWW-Authenticate`, `Allow`, `Cache-Control`) when present, and the JSON body; the
    /// issuer, whose port changes from run to run, is written `[issuer]`.
    pub fn error_view(&self, issuer: &str) -> Value {
        let mut view = json!({ "status": self.status.as_u16(), "body": self.body });
        for name in ["www-authenticate", "allow", "cache-control"] {
            if let Some(value) = self.header(name) {
                view[name] = json!(value);
            }
        }
        serde_json::from_str(&view.to_string().replace(issuer, "[issuer]")).expect("JSON")
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

    /// A request to `path` on this app.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.address))
    }

    /// `GET path`, without credentials.
    pub async fn get(&self, path: &str) -> Answer {
        Answer::send(self.request(reqwest::Method::GET, path)).await
    }

    /// A call on a JSON API with a bearer token, and a JSON body if any.
    pub async fn bearer(
        &self,
        method: reqwest::Method,
        path: &str,
        bearer: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.request(method, path).bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Answer::send(request).await
    }

    /// `POST path` with a form body and this client authentication.
    pub async fn post_form(&self, path: &str, auth: Auth<'_>, fields: &[(&str, &str)]) -> Answer {
        let mut fields = fields.to_vec();
        let mut request = self.request(reqwest::Method::POST, path);
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
        let answer = self.get(path).await;
        assert_eq!(answer.status, reqwest::StatusCode::OK, "GET {path}");
        assert!(
            !answer.body.is_null(),
            "not a JSON document: {}",
            answer.text
        );
        answer.body
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
}

/// The claims of a JWT, read without verifying it.
pub fn claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&json).expect("JSON claims")
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
