#!/usr/bin/env bash
# bench/run.sh [--peer] [--smoke] [--seconds N] [--backends sqlite,postgres] [--scenarios a,b]
#              [--preload ROWS] [--soak SECONDS] [--no-report]
# Builds the release binary, installs wrk and the peer kit when missing, and runs the harness.
# PostgreSQL comes from BENCH_POSTGRES_URL or KEYFRAME_TEST_POSTGRES_URL (a server on which it
# may create and drop databases). See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${PEER_BENCH:-../shared/peer-bench}
[ -x "$shared/run.sh" ] || { echo "bench: the peer kit is missing at $shared" >&2; exit 2; }
# wrk for every run; node-oidc-provider only with --peer (setup.sh is idempotent).
if ! command -v wrk >/dev/null || [[ " $* " == *" --peer "* ]]; then
    "$shared/setup.sh" >&2
fi
cargo build --release --quiet
exec python3 bench/harness.py --binary target/release/keyframe "$@"
