//! End to end in real headless Chromium (Debian's `chromium` and `chromium-driver`): the
//! browser sign-in with a tenant picked on the consent page, and the Token Management page.
//! Screenshots at desktop and phone widths go to `target/screenshots/` for review.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::backend_tests;
use crate::helpers::{keyframe, Backend, TestApp, TestDb};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The browser, or `None` (loudly) when Chromium is not installed outside CI. In CI a missing
/// browser fails the test: it must run there.
async fn browser() -> Option<(Driver, Client)> {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but {CHROMIUM} or {CHROMEDRIVER} is missing: .ci/run installs chromium and chromium-driver");
        }
        eprintln!(
            "\n!!! SKIPPED the Chromium test: apt-get install chromium chromium-driver !!!\n"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let profile = tempfile::tempdir().expect("profile dir");
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--window-size=1280,900",
    ];
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.push(format!(
        "--user-data-dir={}",
        driver._profile.path().display()
    ));
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": CHROMIUM, "args": args }),
    );
    let mut last = None;
    for _ in 0..50 {
        match ClientBuilder::native()
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
        {
            Ok(client) => return Some((driver, client)),
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("chromedriver did not accept a session: {last:?}");
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// Saves the page at a desktop and a phone width.
async fn shoot(client: &Client, name: &str) {
    for (label, width, height) in [("desktop", 1280, 900), ("phone", 390, 844)] {
        client.set_window_size(width, height).await.expect("resize");
        let png = client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(screenshots().join(format!("{name}-{label}.png")), png)
            .expect("write screenshot");
    }
    client.set_window_size(1280, 900).await.expect("resize");
}

/// A local "application" that receives the redirect and hands its query string to the test.
async fn callback_server() -> (u16, tokio::sync::oneshot::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (send, receive) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut send = Some(send);
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = vec![0u8; 8192];
            let n = socket.read(&mut buffer).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..n]).to_string();
            let target = request.split_whitespace().nth(1).unwrap_or("").to_owned();
            let body = "<!doctype html><title>App</title><p>Signed in.</p>";
            let response = format!("HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            let _ = socket.write_all(response.as_bytes()).await;
            if target.starts_with("/callback") {
                if let Some(send) = send.take() {
                    let _ = send.send(
                        target
                            .split_once('?')
                            .map(|(_, q)| q.to_owned())
                            .unwrap_or_default(),
                    );
                }
            }
        }
    });
    (port, receive)
}

async fn seed(backend: Backend, redirect_uri: &str) -> (TestApp, String) {
    let db = TestDb::new(backend).expect("database");
    let url = db.url.clone();
    keyframe(
        &url,
        &["--json", "tenant", "create", "acme", "--name", "Acme Video"],
        None,
    )
    .await
    .json();
    keyframe(
        &url,
        &["--json", "tenant", "create", "beta", "--name", "Beta Live"],
        None,
    )
    .await
    .json();
    let args = [
        "--json",
        "user",
        "create",
        "alice",
        "--password-stdin",
        "--tenant",
        "acme:owner",
        "--tenant",
        "beta",
    ];
    keyframe(&url, &args, Some("alice-pw")).await.json();
    let args = [
        "--json",
        "client",
        "create",
        "--name",
        "Portal App",
        "--public",
        "--redirect-uri",
        redirect_uri,
        "--scope",
        "video:read",
    ];
    let client = keyframe(&url, &args, None).await.json();
    (
        TestApp::spawn_on(db, &|_| {}).await,
        client["client_id"].as_str().expect("id").to_owned(),
    )
}

async fn sign_in_pick_the_second_tenant_and_get_tokens(backend: Backend) {
    let Some((_driver, browser)) = browser().await else {
        return;
    };
    let (callback_port, code_sent) = callback_server().await;
    let redirect_uri = format!("http://127.0.0.1:{callback_port}/callback");
    let (app, client_id) = seed(backend, &redirect_uri).await;
    let verifier = "chromium-end-to-end-verifier-0123456789-abcdefghij";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", "video:read"),
            ("state", "chromium-state"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .finish();

    browser
        .goto(&format!("{}/oauth/authorize?{query}", app.address))
        .await
        .expect("open");
    browser
        .wait()
        .for_element(Locator::Css("#username"))
        .await
        .expect("the login page");
    let source = browser.source().await.expect("source");
    assert!(source.contains("Portal App"));
    shoot(&browser, "login").await;
    browser
        .find(Locator::Css("#username"))
        .await
        .expect("username")
        .send_keys("alice")
        .await
        .expect("type");
    browser
        .find(Locator::Css("#password"))
        .await
        .expect("password")
        .send_keys("alice-pw")
        .await
        .expect("type");
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");

    browser
        .wait()
        .for_element(Locator::Css("input[name=tenant][value=beta]"))
        .await
        .expect("the consent page");
    let source = browser.source().await.expect("source");
    assert!(
        source.contains("Acme Video")
            && source.contains("Beta Live")
            && source.contains("View your video")
    );
    shoot(&browser, "consent").await;
    browser
        .find(Locator::Css("input[name=tenant][value=beta]"))
        .await
        .expect("beta")
        .click()
        .await
        .expect("pick");
    browser
        .find(Locator::Css("button[name=decision][value=allow]"))
        .await
        .expect("allow")
        .click()
        .await
        .expect("allow");

    let query = tokio::time::timeout(Duration::from_secs(20), code_sent)
        .await
        .expect("the browser reaches the callback")
        .expect("query");
    let params: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(params["state"], "chromium-state");
    assert_eq!(params["iss"], app.issuer);
    let tokens: Value = app
        .http
        .post(format!("{}/oauth/token", app.address))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", params["code"].as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .expect("exchange")
        .json()
        .await
        .expect("json");
    assert_eq!(tokens["tenant"], "beta", "{tokens}");
    let payload = tokens["access_token"]
        .as_str()
        .expect("jwt")
        .split('.')
        .nth(1)
        .expect("payload")
        .to_owned();
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("claims");
    assert_eq!(claims["tenant"], "beta");
    browser.close().await.expect("close");
}

async fn value_of(browser: &Client, css: &str) -> Option<String> {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.prop("value").await.expect("value"),
        Err(_) => None,
    }
}

async fn manage_a_token_on_the_page(backend: Backend) {
    let Some((_driver, browser)) = browser().await else {
        return;
    };
    let (app, _) = seed(backend, "https://app.example/cb").await;
    browser
        .goto(&format!("{}/tokens?tenant=acme", app.address))
        .await
        .expect("open");
    browser
        .wait()
        .for_element(Locator::Css("#username"))
        .await
        .expect("sign in first");
    browser
        .find(Locator::Css("#username"))
        .await
        .expect("u")
        .send_keys("alice")
        .await
        .expect("type");
    browser
        .find(Locator::Css("#password"))
        .await
        .expect("p")
        .send_keys("alice-pw")
        .await
        .expect("type");
    browser
        .find(Locator::Css("button[type=submit]"))
        .await
        .expect("submit")
        .click()
        .await
        .expect("click");
    browser
        .wait()
        .for_element(Locator::Css("#name"))
        .await
        .expect("the token page");

    browser
        .find(Locator::Css("#name"))
        .await
        .expect("name")
        .send_keys("Upload script")
        .await
        .expect("type");
    browser
        .find(Locator::Css(
            "form[action='/tokens/create'] button[type=submit]",
        ))
        .await
        .expect("create")
        .click()
        .await
        .expect("click");
    browser
        .wait()
        .for_element(Locator::Css("#new-token"))
        .await
        .expect("the new token");
    let secret = value_of(&browser, "#new-token").await.expect("shown once");
    assert!(secret.starts_with("kfpat_"), "{secret}");
    shoot(&browser, "tokens-created").await;

    // Reloading shows only the metadata.
    browser
        .goto(&format!("{}/tokens?tenant=acme", app.address))
        .await
        .expect("reload");
    assert!(value_of(&browser, "#new-token").await.is_none());
    let source = browser.source().await.expect("source");
    assert!(source.contains("Upload script") && !source.contains(&secret));
    shoot(&browser, "tokens").await;

    // Renew, confirming first.
    browser
        .find(Locator::Css("a[href*='/renew']"))
        .await
        .expect("renew")
        .click()
        .await
        .expect("click");
    browser
        .wait()
        .for_element(Locator::Css("form[action$='/renew'] button"))
        .await
        .expect("confirmation");
    assert!(browser
        .source()
        .await
        .expect("source")
        .contains("Renew “Upload script”?"));
    browser
        .find(Locator::Css("form[action$='/renew'] button"))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("click");
    browser
        .wait()
        .for_element(Locator::Css("#new-token"))
        .await
        .expect("the renewed token");
    let renewed = value_of(&browser, "#new-token").await.expect("shown once");
    assert_ne!(renewed, secret);

    // Revoke, confirming first: gone.
    browser
        .goto(&format!("{}/tokens?tenant=acme", app.address))
        .await
        .expect("list");
    browser
        .find(Locator::Css("a[href*='/revoke']"))
        .await
        .expect("revoke")
        .click()
        .await
        .expect("click");
    browser
        .wait()
        .for_element(Locator::Css("form[action$='/revoke'] button"))
        .await
        .expect("confirmation");
    shoot(&browser, "tokens-revoke-confirm").await;
    browser
        .find(Locator::Css("form[action$='/revoke'] button"))
        .await
        .expect("confirm")
        .click()
        .await
        .expect("click");
    browser
        .wait()
        .for_element(Locator::Css("#name"))
        .await
        .expect("back on the list");
    assert!(!browser
        .source()
        .await
        .expect("source")
        .contains("Upload script"));
    let check = app
        .http
        .get(format!("{}/api/v1/tenants/acme/tokens", app.address))
        .bearer_auth(&renewed)
        .send()
        .await
        .expect("api");
    assert_eq!(
        check.status(),
        reqwest::StatusCode::UNAUTHORIZED,
        "the revoked token is dead"
    );
    browser.close().await.expect("close");
}

backend_tests!(
    sign_in_pick_the_second_tenant_and_get_tokens,
    manage_a_token_on_the_page
);
