//! End to end in real headless Chromium (Debian's `chromium` and `chromium-driver`): the
//! browser sign-in with a tenant picked on the consent page, and the Token Management page.
//! Screenshots at desktop and phone widths go to `target/screenshots/` for review.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::backend_tests;
use crate::helpers::{challenge, claims, Backend, World};

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

/// Waits for the element at `css` to appear.
async fn wait_for(browser: &Client, css: &str, what: &str) {
    browser
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .expect("click");
}

/// Types alice's credentials into the sign-in form on screen and submits it.
async fn sign_in_as_alice(browser: &Client) {
    for (css, text) in [("#username", "alice"), ("#password", "alice-pw")] {
        type_into(browser, css, text).await;
    }
    click(browser, "button[type=submit]").await;
}

async fn type_into(browser: &Client, css: &str, text: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .expect("type");
}

async fn sign_in_pick_the_second_tenant_and_get_tokens(backend: Backend) {
    let Some((_driver, browser)) = browser().await else {
        return;
    };
    let (callback_port, code_sent) = callback_server().await;
    let redirect_uri = format!("http://127.0.0.1:{callback_port}/callback");
    let w = World::portal(backend, &[&redirect_uri], &["video:read"])
        .build()
        .await;
    let (app, client_id) = (&w.app, w.client().id.as_str());
    let verifier = "chromium-end-to-end-verifier-0123456789-abcdefghij";
    let challenge = challenge(verifier);
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", client_id),
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
    wait_for(&browser, "#username", "the login page").await;
    let source = browser.source().await.expect("source");
    assert!(source.contains("Portal App"));
    shoot(&browser, "login").await;
    sign_in_as_alice(&browser).await;

    let beta = "input[name=tenant][value=beta]";
    wait_for(&browser, beta, "the consent page").await;
    let source = browser.source().await.expect("source");
    assert!(
        source.contains("Acme Video")
            && source.contains("Beta Live")
            && source.contains("View your video")
    );
    shoot(&browser, "consent").await;
    click(&browser, beta).await;
    click(&browser, "button[name=decision][value=allow]").await;

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
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("code_verifier", verifier),
    ];
    let tokens = app
        .post_form("/oauth/token", w.client().auth(), &fields)
        .await
        .body;
    assert_eq!(tokens["tenant"], "beta", "{tokens}");
    let claims = claims(tokens["access_token"].as_str().expect("jwt"));
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
    let w = World::portal(backend, &["https://app.example/cb"], &["video:read"])
        .build()
        .await;
    let app = &w.app;
    browser
        .goto(&format!("{}/tokens?tenant=acme", app.address))
        .await
        .expect("open");
    wait_for(&browser, "#username", "sign in first").await;
    sign_in_as_alice(&browser).await;
    wait_for(&browser, "#name", "the token page").await;

    type_into(&browser, "#name", "Upload script").await;
    click(
        &browser,
        "form[action='/tokens/create'] button[type=submit]",
    )
    .await;
    wait_for(&browser, "#new-token", "the new token").await;
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
    click(&browser, "a[href*='/renew']").await;
    wait_for(&browser, "form[action$='/renew'] button", "confirmation").await;
    assert!(browser
        .source()
        .await
        .expect("source")
        .contains("Renew “Upload script”?"));
    click(&browser, "form[action$='/renew'] button").await;
    wait_for(&browser, "#new-token", "the renewed token").await;
    let renewed = value_of(&browser, "#new-token").await.expect("shown once");
    assert_ne!(renewed, secret);

    // Revoke, confirming first: gone.
    browser
        .goto(&format!("{}/tokens?tenant=acme", app.address))
        .await
        .expect("list");
    click(&browser, "a[href*='/revoke']").await;
    wait_for(&browser, "form[action$='/revoke'] button", "confirmation").await;
    shoot(&browser, "tokens-revoke-confirm").await;
    click(&browser, "form[action$='/revoke'] button").await;
    wait_for(&browser, "#name", "back on the list").await;
    assert!(!browser
        .source()
        .await
        .expect("source")
        .contains("Upload script"));
    let check = app
        .bearer(Method::GET, "/api/v1/tenants/acme/tokens", &renewed, None)
        .await;
    assert_eq!(
        check.status,
        reqwest::StatusCode::UNAUTHORIZED,
        "the revoked token is dead"
    );
    browser.close().await.expect("close");
}

backend_tests!(
    sign_in_pick_the_second_tenant_and_get_tokens,
    manage_a_token_on_the_page
);
