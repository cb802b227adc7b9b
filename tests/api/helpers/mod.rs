//! The test harness: a fresh database per test on each backend, the real app on a random port,
//! the real `keyframe` binary for set-up and CLI tests, and a seeded `World` to test in.
//!
//! - [`server`]: databases, the app, the cuttable proxy in front of PostgreSQL.
//! - [`clients`]: requests as a client sends them, the answers, and the CLI runner.
//! - [`world`]: the `World` builder that seeds tenants, users and clients through the CLI.
//! - [`browser`]: a cookie-jar browser for the HTML pages.

mod browser;
mod clients;
mod server;
mod world;

pub use browser::*;
pub use clients::*;
pub use server::*;
pub use world::*;

/// Runs a test body once per backend: `backend_tests!(name, ...)` makes `name::sqlite` and
/// `name::postgres` from `async fn name(backend: Backend)`. The PostgreSQL variant is ignored
/// unless asked for (`cargo test -- --include-ignored`), and then needs
/// `KEYFRAME_TEST_POSTGRES_URL`: without it, it fails rather than pass without having run.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::helpers::Backend;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs KEYFRAME_TEST_POSTGRES_URL"]
                async fn postgres() {
                    super::$name(Backend::Postgres).await;
                }
            }
        )*
    };
}
