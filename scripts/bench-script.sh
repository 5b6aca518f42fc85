#!/usr/bin/env bash
# Ingest req/s with a script on the rule versus without, in one run: the
# shared harness's limit peer, then the router on scripts/bench-routes (map
# only) and on scripts/bench-routes-script (same route plus a Rhai script on
# every delivery), each under the same wrk load. Prints the three rows.
#
#   scripts/bench-script.sh           # ~2 min
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
results=$(mktemp -d)
PEERS=limit ROUTER_NAME=router-no-script BENCH_ROUTES="$root/scripts/bench-routes" \
  bash "$root/scripts/bench.sh" | tee "$results/off.txt"
PEERS="" ROUTER_NAME=router-script BENCH_ROUTES="$root/scripts/bench-routes-script" \
  bash "$root/scripts/bench.sh" | tee "$results/on.txt"
echo
echo "== one run: limit, router without script, router with script =="
grep -hE '^\s*(peer|limit|router)' "$results/off.txt" "$results/on.txt" | awk '!seen[$0]++'
