#!/usr/bin/env bash
# Delivery figures (issue "Delivery"): ingest req/s and delivery rate with an
# HTTP sink whose receiver answers 200 at once (the shared harness's bare
# hyper `limit` server), without and with batching (100 per request), and
# ingest req/s while that sink is down (a closed port). wrk: 2 threads, 64 connections, 1 KB body; fsync on. Loopback only.
#
#   scripts/bench-delivery.sh
source "$(dirname "$0")/bench-peers.sh"
mkdir -p "$work/run"
python3 "$shared/load/mkreq.py" "$work/run" whsec_x >/dev/null
export BENCH_BODY_FILE=$work/run/body.json BENCH_STRIPE_SIG=unused BENCH_HUB_SIG=unused

receiver_port=18085 router_port=18086 admin_port=19086
"$work/target/release/bench-limit" "127.0.0.1:$receiver_port" >/dev/null 2>&1 &
receiver=$!
trap 'kill $receiver 2>/dev/null || true' EXIT

run() {  # run LABEL RECEIVER_URL [ROUTES_DIR]
  local label=$1 url=$2 routes=${3:-$root/scripts/bench-delivery} data
  data=$(mktemp -d)
  TARGET_URL=$url "$root/target/release/router" serve --routes "$routes" --data "$data" \
    --listen "127.0.0.1:$router_port" --admin-listen "127.0.0.1:$admin_port" --log-format json 2>/dev/null &
  local router=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$router_port/webhooks/stripe" && break; sleep 0.1; done
  local start end rps pending=1
  start=$(date +%s.%N)
  rps=$(wrk -t2 -c64 -d"${dur}s" -s "$shared/load/bench.lua" "http://127.0.0.1:$router_port/webhooks/stripe" | sed -nE 's/.* rps=([0-9.]+).*/\1/p')
  if [[ $label == sink-up* ]]; then
    for _ in $(seq 600); do
      pending=$(curl -s "127.0.0.1:$admin_port/events?status=pending&limit=1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["events"]))')
      [[ $pending == 0 ]] && break
      sleep 0.1
    done
    end=$(date +%s.%N)
    local total
    total=$(curl -s "127.0.0.1:$admin_port/routes" | python3 -c 'import json,sys; print(json.load(sys.stdin)["routes"][0]["stats"]["accepted"])')
    echo "$label: ingest ${rps} req/s; ${total} events delivered in $(echo "$end - $start" | bc) s = $(echo "$total / ($end - $start)" | bc) events/s (pending left: $pending)"
  else
    echo "$label: ingest ${rps} req/s"
  fi
  kill "$router"; wait "$router" 2>/dev/null || true
  rm -rf "$data"
}

run sink-up "http://127.0.0.1:$receiver_port/hook"
run sink-up-batched "http://127.0.0.1:$receiver_port/hook" "$root/scripts/bench-delivery-batched"
run sink-down "http://127.0.0.1:1/hook"
