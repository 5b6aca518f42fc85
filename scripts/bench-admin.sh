#!/usr/bin/env bash
# Ingest with the admin API in use (issue "Operating it"): the shared
# harness (../shared/bench/run.sh, router row only, fsync on) drives the
# router twice per round: once with the admin listener off, once with a
# poller calling /stats, /routes, /events and /metrics once a second and the
# dashboard open in headless Chromium (it refreshes every 2 s). Prints
# req/s of both and the ratio per round. Chromium runs on the same 2 cores:
# that is part of the cost of "the dashboard open" here.
#
#   scripts/bench-admin.sh            # ROUNDS=2 DURATION=10
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
harness=${BENCH_HARNESS:-$root/../shared/bench/run.sh}
work=${BENCH_WORK:-/tmp/benchpeers}
rounds=${ROUNDS:-2}
export DURATION=${DURATION:-10}
token=bench-admin-token admin=127.0.0.1:19090
cargo build --release -q --manifest-path "$root/Cargo.toml"
"$root/scripts/setup-signers.sh" >/dev/null
"$root/scripts/setup-browser.sh" >/dev/null
base="$root/target/release/router serve --routes $root/scripts/bench-routes --data \$BENCH_DATA_DIR --listen \$BENCH_ADDR --log-format json"
export ROUTER_URL=http://127.0.0.1:18083/webhooks/stripe PEERS=""

rps() {  # the router row's req/s at 64 connections from the last run
  awk -F'\t' 'NR==1{for(i=1;i<=NF;i++) if($i ~ /^rps_c/ && !c) c=i} $1=="router"{print $c}' "$work/results/last.tsv"
}

poll() {  # once a second until killed; waits for the listener
  while true; do
    for path in /stats /routes "/events?limit=25" /metrics; do
      curl -s -o /dev/null -H "Authorization: Bearer $token" "http://$admin$path" || true
    done
    sleep 1
  done
}

for round in $(seq "$rounds"); do
  ROUTER_CMD="$base --admin-listen off" bash "$harness" >/dev/null 2>&1
  alone=$(rps)
  poll & poller=$!
  node "$root/target/signers/browser-watch.mjs" "http://$admin/" "$token" $((DURATION * 2 + 15)) >/dev/null 2>&1 & browser=$!
  ROUTER_ADMIN_TOKEN=$token ROUTER_CMD="$base --admin-listen $admin" bash "$harness" >/dev/null 2>&1
  with=$(rps)
  kill $poller 2>/dev/null || true
  wait $browser 2>/dev/null || true
  echo "round $round: ingest alone $alone req/s, with admin polled 1/s + dashboard open $with req/s, ratio $(echo "scale=3; $with / $alone" | bc)"
done
