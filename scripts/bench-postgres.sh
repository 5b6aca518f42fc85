#!/usr/bin/env bash
# PostgreSQL sink figures (issue "A postgres sink"): rows per second into
# PostgreSQL, unbatched and batched (100 rows per statement), for new rows
# (inserts) and for rows that exist (updates), and ingest req/s at c64 with
# that sink on vs the same rows in the embedded store. Each event is a 1 KiB
# Stripe-like customer with an id of its own (bench-postgres/unique.lua);
# its map writes 8 columns (text, bigint, timestamptz from Unix time,
# boolean, jsonb). wrk: 2 threads, 64 connections; fsync on in the router,
# synchronous commit in PostgreSQL; loopback only. Uses DATABASE_URL when
# set, else starts a throwaway cluster (scripts/setup-postgres.sh).
#
#   scripts/bench-postgres.sh             # DURATION=10 s of load per run
#
# Per run it prints ingest req/s (while wrk runs, delivery runs alongside)
# and two delivery rates: rows over the whole run (wrk start to queue
# empty) and the drain rate (rows delivered after wrk stopped, over that
# time: the sink alone, with the CPU no longer shared with ingest).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${BENCH_SHARED:-$root/../shared/bench}
here=$root/scripts/bench-postgres
dur=${DURATION:-10}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q --bin router --manifest-path "$root/Cargo.toml"

work=$(mktemp -d)
cleanup() {
  [[ -n ${router:-} ]] && kill "$router" 2>/dev/null || true
  [[ -n ${own_pg:-} ]] && "$root/scripts/setup-postgres.sh" stop "$own_pg"
  rm -rf "$work"
}
trap cleanup EXIT
if [[ -z ${DATABASE_URL:-} ]]; then
  eval "$("$root/scripts/setup-postgres.sh")"
  own_pg=$PG_TEST_DIR
fi
psql() { PGOPTIONS="-c client_min_messages=warning" command psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }
python3 "$shared/load/mkreq.py" "$work" unused >/dev/null
export BENCH_BODY_FILE=$work/body.json

router_port=18087 admin_port=19087
metric() {  # the sum of a Prometheus counter or gauge, with a label filter
  curl -s "127.0.0.1:$admin_port/metrics" |
    awk -v m="$1" -v f="${2:-}" '$1 ~ "^"m"({|$)" && index($1, f) { s += $2 } END { printf "%d\n", s }'
}
delivered() { metric webhook_router_deliveries_total 'outcome="delivered"'; }

run() {  # run LABEL VARIANT [KEYS]
  local label=$1 variant=$2 keys=${3:-0} data
  data=$(mktemp -d -p "$work")
  "$root/target/release/router" serve --routes "$here/$variant" --data "$data" \
    --listen "127.0.0.1:$router_port" --admin-listen "127.0.0.1:$admin_port" --log-format json 2>"$data.log" &
  router=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$admin_port/metrics" && break; sleep 0.1; done
  local t0 t1 t2 n1 n2 rps left
  t0=$(date +%s.%N)
  rps=$(KEYS=$keys wrk -t2 -c64 -d"${dur}s" -s "$here/unique.lua" "http://127.0.0.1:$router_port/webhooks/stripe" |
    sed -nE 's/^RESULT rps=([0-9.]+).*/\1/p')
  t1=$(date +%s.%N) n1=$(delivered)
  for _ in $(seq 3000); do
    left=$(metric webhook_router_queue_depth)
    [[ $left == 0 ]] && break
    sleep 0.1
  done
  t2=$(date +%s.%N) n2=$(delivered)
  printf '%-34s ingest %8.0f req/s | %7d rows in %5.1f s = %6.0f rows/s | drain %6.0f rows/s (queue left: %s)\n' \
    "$label" "$rps" "$n2" "$(bc <<<"$t2 - $t0")" "$(bc <<<"$n2 / ($t2 - $t0)")" \
    "$(bc <<<"($n2 - $n1) / ($t2 - $t1 + 0.001)")" "$left"
  grep -q '"level":"ERROR"' "$data.log" && { echo "  errors in the router's log:"; grep '"level":"ERROR"' "$data.log" | head -3; }
  kill "$router"; wait "$router" 2>/dev/null || true
  router=
}

echo "PostgreSQL sink, ${dur} s of wrk -t2 -c64 per run, 1 KiB events, $(nproc) cores"
run "store sink (baseline)" store
psql -f "$here/schema.sql"
run "postgres, unbatched, new rows" postgres
run "postgres, unbatched, existing rows" postgres
psql -c 'TRUNCATE bench_customers'
run "postgres, batched 100, new rows" postgres-batched
run "postgres, batched 100, existing rows" postgres-batched
echo "rows in bench_customers: $(psql -At -c 'SELECT count(*) FROM bench_customers')"
