//! The OAuth 2.0 endpoints: thin handlers that parse, call the token service, and answer.

pub mod authorize;
pub mod client_auth;
pub mod error;
pub mod form;
pub mod introspect;
pub mod jwks;
pub mod metadata;
pub mod revoke;
pub mod token;

pub const AUTHORIZATION_PATH: &str = "/oauth/authorize";
pub const TOKEN_PATH: &str = "/oauth/token";
pub const JWKS_PATH: &str = "/oauth/jwks";
pub const INTROSPECTION_PATH: &str = "/oauth/introspect";
pub const REVOCATION_PATH: &str = "/oauth/revoke";

use actix_web::http::header;
use actix_web::HttpResponseBuilder;

/// Token responses and everything carrying token state must not be cached (RFC 6749 §5.1).
pub(crate) fn no_store(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    builder
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    builder
}
