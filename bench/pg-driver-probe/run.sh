#!/usr/bin/env bash
# The PostgreSQL driver probe (see src/main.rs): a fresh database set up with Keyframe's own CLI,
# then three alternating rounds of each driver, the probe pinned to core 0.
# Usage: bench/pg-driver-probe/run.sh [postgres://ADMIN-URL]   (default: the test server)
set -euo pipefail
cd "$(dirname "$0")"
admin=${1:-${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}}
db=kf_probe_$$
url="${admin%/*}/$db"
(cd ../.. && cargo build --release --quiet)
cargo build --release --quiet
psql -q "$admin" -c "CREATE DATABASE $db"
trap 'psql -q "$admin" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
kf() { KEYFRAME_DATABASE_URL="$url" ../../target/release/keyframe "$@" >/dev/null; }
kf tenant create acme --name Acme
echo "probe-password-1" | kf user create alice --password-stdin --tenant acme:owner
kf client create --name probe --grant-type password --scope a
psql -q "$url" -c "INSERT INTO token_families (id, client_id, user_id, scope, created_at, expires_at)
    SELECT 'probe', (SELECT id FROM clients LIMIT 1), (SELECT id FROM users LIMIT 1), '', 0, 4000000000"
for round in 1 2 3; do
    for driver in sync async; do
        taskset -c 0 target/release/pg-driver-probe "$driver" "$url?sslmode=disable" probe acme 8
    done
done
# libpq with its default sslmode (TLS on this server), as the benchmark connects.
taskset -c 0 target/release/pg-driver-probe sync "$url" probe acme 8
