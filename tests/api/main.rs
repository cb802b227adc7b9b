//! One integration-test binary (so the tests link once); every body runs on SQLite and on
//! PostgreSQL through `backend_tests!` (the PostgreSQL variants are `#[ignore]`d unless
//! `--include-ignored` and `KEYFRAME_TEST_POSTGRES_URL` ask for them).

mod helpers;

mod api_tokens;
mod authorize;
mod chromium;
mod cli;
mod cli_errors;
mod error_bodies;
mod http_hygiene;
mod introspection;
mod least_privilege;
mod oauth2_client;
mod server;
mod signed_urls;
mod stream_tokens;
mod token_page;
mod tokens;
mod url_secrets;
mod vms;
