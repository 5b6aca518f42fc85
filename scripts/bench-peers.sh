# Sourced by the bench scripts that compare the router with the shared
# harness's bare hyper `limit` server: builds both (release) and sets
# root, shared, work and dur. Needs wrk.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${BENCH_SHARED:-$root/../shared/bench}
work=${BENCH_WORK:-/tmp/benchpeers}
dur=${DURATION:-10}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q --manifest-path "$root/Cargo.toml"
CARGO_TARGET_DIR=$work/target cargo build --release -q --manifest-path "$shared/limit/Cargo.toml"
