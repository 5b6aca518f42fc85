#!/usr/bin/env bash
# Runs the router as one more row of the shared peer benchmark
# (../shared/bench/run.sh: bare hyper "limit", node-express, adnanh-webhook),
# fsync on (every 2xx is durable), and prints the table.
#
#   scripts/bench.sh                  # all peers + router (~3 min)
#   PEERS="" scripts/bench.sh         # router only
#   BENCH_ROUTES=dir scripts/bench.sh # the router on another routes dir
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
harness=${BENCH_HARNESS:-$root/../shared/bench/run.sh}
# The shipped build (profile `dist`: LTO), not the tests' `release`.
cargo build --profile dist --bin router --manifest-path "$root/Cargo.toml" -q
export ROUTER_CMD="$root/target/dist/router serve --routes ${BENCH_ROUTES:-$root/scripts/bench-routes} --data \$BENCH_DATA_DIR --listen \$BENCH_ADDR --admin-listen off --log-format json"
export ROUTER_URL=${ROUTER_URL:-http://127.0.0.1:18083/webhooks/stripe}
exec bash "$harness"
