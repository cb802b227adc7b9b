//! The Token Management page over HTTP: sign-in, what each role sees, create (shown once),
//! renew and revoke behind a confirmation, and CSRF.

use reqwest::{Method, StatusCode};

use crate::backend_tests;
use crate::helpers::{Backend, Browser, Page, TestApp, World};

/// Tenant acme ("Acme Video"): olivia (`olivia-pw`) owns it, max (`max-pw`) is a member.
async fn acme(backend: Backend) -> World {
    World::builder(backend)
        .tenant("acme", "Acme Video")
        .user("olivia", "olivia-pw", &["acme:owner"])
        .user("max", "max-pw", &["acme:member"])
        .build()
        .await
}

/// Posts the page's form that creates a token, with these fields besides `tenant=acme`.
async fn create_token(browser: &mut Browser<'_>, csrf: &str, fields: &[(&str, &str)]) -> Page {
    let mut form = vec![("csrf", csrf), ("tenant", "acme")];
    form.extend_from_slice(fields);
    browser.post("/tokens/create", &form).await
}

fn secret_on(page: &Page) -> Option<String> {
    let marker = "id=\"new-token\" class=\"secret\" type=\"text\" readonly value=\"";
    page.body.find(marker).map(|i| {
        let start = i + marker.len();
        page.body[start..start + page.body[start..].find('"').expect("quote")].to_owned()
    })
}

fn link(page: &Page, action: &str) -> String {
    let end = page
        .body
        .find(&format!("/{action}?tenant=acme"))
        .expect("a link");
    let start = page.body[..end].rfind("/tokens/").expect("href");
    format!("{}/{action}?tenant=acme", &page.body[start..end])
}

async fn owners_create_renew_and_revoke_with_confirmation(backend: Backend) {
    let world = acme(backend).await;
    let app = &world.app;
    let mut browser = Browser::new(app);
    let page = browser.sign_in_to_tokens("olivia", "olivia-pw").await;
    assert_eq!(page.status, StatusCode::OK);
    for section in [
        "My tokens",
        "Organization user tokens",
        "System tokens",
        "Create a token",
    ] {
        assert!(page.body.contains(section), "{section}");
    }
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert!(page.headers["content-security-policy"]
        .to_str()
        .expect("csp")
        .contains("frame-ancestors 'none'"));

    let csrf = page.field("csrf");
    let created = create_token(
        &mut browser,
        csrf.as_str(),
        &[
            ("name", "Encoder"),
            ("kind", "system"),
            ("role_admin", "admin"),
            ("expires", "2031-05-01"),
        ],
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let secret = secret_on(&created).expect("the new token is shown");
    assert!(secret.starts_with("kfsat_"));
    assert!(created.body.contains("will not be shown again"));
    assert!(created.body.contains("2031-05-01"));

    // Reloading shows the metadata only.
    let reloaded = browser.get("/tokens?tenant=acme").await;
    assert!(secret_on(&reloaded).is_none() && !reloaded.body.contains(&secret));
    assert!(reloaded.body.contains("Encoder"));

    // Renew asks first, then shows the new secret once; the old one is dead.
    let confirm = browser.get(&link(&reloaded, "renew")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Renew “Encoder”?"));
    let renewed = browser
        .post(
            &link(&reloaded, "renew").replace("?tenant=acme", ""),
            &[("csrf", &confirm.field("csrf")), ("tenant", "acme")],
        )
        .await;
    let new_secret = secret_on(&renewed).expect("the renewed token is shown");
    assert_ne!(new_secret, secret);
    let usable = |token: String| async move { keyframe_active(app, &token).await };
    assert!(!usable(secret.clone()).await);
    assert!(usable(new_secret.clone()).await);

    // Revoke asks first, then it is gone.
    let page = browser.get("/tokens?tenant=acme").await;
    let confirm = browser.get(&link(&page, "revoke")).await;
    assert!(confirm.body.contains("Revoke “Encoder”?"));
    let revoked = browser
        .post(
            &link(&page, "revoke").replace("?tenant=acme", ""),
            &[("csrf", &confirm.field("csrf")), ("tenant", "acme")],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let after = browser.get(&revoked.location()).await;
    assert!(!after.body.contains("Encoder"));
    assert!(!usable(new_secret).await);
}

/// Through the API (the page and the API share the rules): is the token usable?
async fn keyframe_active(app: &TestApp, token: &str) -> bool {
    let answer = app
        .bearer(Method::GET, "/api/v1/tenants/acme/tokens", token, None)
        .await;
    // A system token may not list (403) but is authenticated; a dead one is 401.
    answer.status != StatusCode::UNAUTHORIZED
}

async fn members_see_their_own_and_forms_need_csrf(backend: Backend) {
    let world = acme(backend).await;
    let app = &world.app;
    let mut owner = Browser::new(app);
    let page = owner.sign_in_to_tokens("olivia", "olivia-pw").await;
    create_token(
        &mut owner,
        &page.field("csrf"),
        &[("name", "Olivia's"), ("kind", "personal")],
    )
    .await;

    let mut member = Browser::new(app);
    let page = member.sign_in_to_tokens("max", "max-pw").await;
    assert!(page.body.contains("My tokens"));
    assert!(
        !page.body.contains("System tokens") && !page.body.contains("Organization user tokens")
    );
    assert!(
        !page.body.contains("Olivia"),
        "a member does not see others' tokens"
    );
    assert!(
        !page.body.contains("value=\"system\""),
        "no system option for members"
    );

    // Posting kind=system anyway: refused on the page, nothing created.
    let refused = create_token(
        &mut member,
        &page.field("csrf"),
        &[
            ("name", "Sneaky"),
            ("kind", "system"),
            ("role_owner", "owner"),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("role=\"alert\""));
    assert!(secret_on(&refused).is_none());

    // Without the CSRF token: refused, nothing created.
    let forged = create_token(
        &mut member,
        "forged-forged-forged-forged",
        &[("name", "Forged"), ("kind", "personal")],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let created = create_token(
        &mut member,
        &page.field("csrf"),
        &[("name", "Script"), ("kind", "personal")],
    )
    .await;
    assert!(secret_on(&created).expect("created").starts_with("kfpat_"));
    let page = member.get("/tokens?tenant=acme").await;
    assert!(
        page.body.contains("Script")
            && !page.body.contains("Forged")
            && !page.body.contains("Sneaky")
    );

    // The owner sees the member's token among the organization's.
    let page = owner.get("/tokens?tenant=acme").await;
    let org = page.body.find("Organization user tokens").expect("section");
    let system = page.body.find("System tokens").expect("section");
    let script = page.body.find("Script").expect("max's token");
    assert!(
        org < script && script < system,
        "listed under Organization user tokens"
    );

    // The login page only follows local paths afterwards.
    let login = member.get("/login?next=https://evil.example/").await;
    assert_eq!(login.field("request"), "/tokens");
}

backend_tests!(
    owners_create_renew_and_revoke_with_confirmation,
    members_see_their_own_and_forms_need_csrf
);
