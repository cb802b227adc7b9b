//! A probe for the PostgreSQL driver question in bench/FINDINGS.md, not part of Keyframe.
//! On one thread (run it under `taskset -c 0`), 32 concurrent requesters and 10 connections
//! run introspection's liveness query, prepared once per connection, through (a) `sync`:
//! libpq via diesel in blocking threads, as Keyframe does, or (b) `async`: tokio-postgres on
//! the event loop. Prints queries per second.
//!
//! Usage: pg-driver-probe sync|async URL FAMILY_ID TENANT_ID [SECONDS]
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool};
use diesel::sql_types::Text;

const QUERY: &str = "SELECT u.username FROM token_families f JOIN users u ON u.id = f.user_id \
    WHERE f.id = $1 AND f.revoked_at IS NULL AND u.disabled = false \
    AND EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.id AND m.tenant_id = $2) \
    AND NOT EXISTS (SELECT 1 FROM revoked_access_tokens r WHERE r.jti = $3)";

/// The query with a static id, so that diesel keeps it prepared (as Keyframe's DSL queries are).
struct Liveness {
    family: String,
    tenant: String,
}

impl diesel::query_builder::QueryId for Liveness {
    type QueryId = Liveness;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for Liveness {
    type SqlType = diesel::sql_types::Untyped;
}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for Liveness {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        // QUERY with its $1, $2, $3 as diesel's bind parameters.
        let mut rest = QUERY;
        let binds: [&str; 3] = [&self.family, &self.tenant, "no-such-jti"];
        for (i, value) in binds.into_iter().enumerate() {
            let (before, after) = rest.split_once(&format!("${}", i + 1)).unwrap();
            out.push_sql(before);
            out.push_bind_param::<Text, _>(value)?;
            rest = after;
        }
        out.push_sql(rest);
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for Liveness {}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    #[allow(dead_code)]
    username: String,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, url, family, tenant) = (&args[1], &args[2], &args[3], &args[4]);
    let seconds: u64 = args.get(5).map_or(10, |s| s.parse().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(14)
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    rt.block_on(async {
        let mut tasks = Vec::new();
        if mode == "sync" {
            let pool = Pool::builder()
                .max_size(10)
                .test_on_check_out(false)
                .build(ConnectionManager::<PgConnection>::new(url.as_str()))
                .unwrap();
            for _ in 0..32 {
                let (pool, done, family, tenant) =
                    (pool.clone(), done.clone(), family.clone(), tenant.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let (pool, family, tenant) = (pool.clone(), family.clone(), tenant.clone());
                        let rows = tokio::task::spawn_blocking(move || {
                            let mut conn = pool.get().unwrap();
                            Liveness { family, tenant }.load::<Row>(&mut conn).unwrap()
                        })
                        .await
                        .unwrap();
                        assert_eq!(rows.len(), 1);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
        } else {
            let mut clients = Vec::new();
            for _ in 0..10 {
                let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(connection);
                let statement = client.prepare(QUERY).await.unwrap();
                clients.push(Arc::new((client, statement)));
            }
            for i in 0..32 {
                let (c, done, family, tenant) = (
                    clients[i % 10].clone(),
                    done.clone(),
                    family.clone(),
                    tenant.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let rows =
                            c.0.query(&c.1, &[&family, &tenant, &"no-such-jti"])
                                .await
                                .unwrap();
                        assert_eq!(rows.len(), 1);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    println!(
        "{mode}: {:.0} queries/s",
        done.load(Ordering::Relaxed) as f64 / seconds as f64
    );
}
