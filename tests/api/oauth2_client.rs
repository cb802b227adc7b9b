//! The password and refresh grants driven by a real third-party OAuth 2.0 client library (the
//! `oauth2` crate), and the access token verified with a JWT library against the JWKS alone.

use oauth2::basic::{BasicClient, BasicTokenType};
use oauth2::{
    ClientId, ClientSecret, ResourceOwnerPassword, ResourceOwnerUsername, Scope, TokenResponse,
    TokenUrl,
};

use crate::backend_tests;
use crate::helpers::{Backend, World, ALICE_PASSWORD};

async fn a_standard_client_signs_in_and_refreshes(backend: Backend) {
    let w = World::token_service(backend).build().await;
    let client = BasicClient::new(ClientId::new(w.client().id.clone()))
        .set_client_secret(ClientSecret::new(
            w.client().secret.clone().expect("a confidential client"),
        ))
        .set_token_uri(TokenUrl::new(format!("{}/oauth/token", w.app.address)).expect("token URL"));
    let http = oauth2::reqwest::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .expect("http");

    let token = client
        .exchange_password(
            &ResourceOwnerUsername::new("alice".into()),
            &ResourceOwnerPassword::new(ALICE_PASSWORD.into()),
        )
        .add_scope(Scope::new("read".into()))
        .request_async(&http)
        .await
        .expect("the password grant works with a standard client");
    assert_eq!(*token.token_type(), BasicTokenType::Bearer);
    assert_eq!(token.expires_in().map(|d| d.as_secs()), Some(600));
    assert_eq!(
        token
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        Some(vec!["read".to_owned()])
    );
    let claims = w.verify(token.access_token().secret()).await;
    assert_eq!(claims["sub"], w.user_id("alice"));
    assert_eq!(claims["client_id"], w.client().id.as_str());
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["scope"], "read");

    // Refresh into another tenant (an extra parameter, as Keyframe defines it).
    let refresh = token.refresh_token().expect("a refresh token");
    let refreshed = client
        .exchange_refresh_token(refresh)
        .add_extra_param("tenant", "beta")
        .request_async(&http)
        .await
        .expect("the refresh grant works");
    assert_ne!(
        refreshed.refresh_token().expect("rotated").secret(),
        refresh.secret()
    );
    let claims = w.verify(refreshed.access_token().secret()).await;
    assert_eq!(claims["tenant"], "beta");
    assert_eq!(claims["scope"], "read");

    // The rotated-out token is refused with the error the library understands.
    let reused = client
        .exchange_refresh_token(refresh)
        .request_async(&http)
        .await;
    match reused {
        Err(oauth2::RequestTokenError::ServerResponse(error)) => {
            assert_eq!(error.error().as_ref(), "invalid_grant");
            assert!(error.error_description().is_some_and(|d| !d.is_empty()));
        }
        other => panic!("expected invalid_grant, got {other:?}"),
    }
}

backend_tests!(a_standard_client_signs_in_and_refreshes);
