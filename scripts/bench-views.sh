#!/usr/bin/env bash
# Status-view reads (issue "Read side"): wrk GET at 64 connections on seed
# 003's status view (a session with a QR, so a ~3 KB record) and on the shared
# harness's bare hyper `limit` server, one after the other; prints req/s and
# the ratio. A read: no fsync. Loopback only.
#
#   scripts/bench-views.sh            # DURATION=10 by default
source "$(dirname "$0")/bench-peers.sh"
limit_port=18087 router_port=18088
data=$(mktemp -d)
"$work/target/release/bench-limit" "127.0.0.1:$limit_port" >/dev/null 2>&1 &
limit=$!
WHATSAPP_WEBHOOK_TOKEN=bench "$root/target/release/router" serve --routes "$root/examples/seed-003-whatsapp/routes.d" \
  --data "$data" --listen "127.0.0.1:$router_port" --admin-listen off --log-format json 2>/dev/null &
router=$!
trap 'kill $limit $router 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$router_port/api/whatsapp/session/list-realtime" && break; sleep 0.1; done
curl -s -o /dev/null -H 'Authorization: Bearer bench' -H 'content-type: application/json' \
  --data '{"event":"qr","data":{"qr":"1@bench,AbCdEfGhIjKlMnOp==,QrStUvWxYz==,1234567890=="}}' \
  "127.0.0.1:$router_port/api/whatsapp/webhook/session-123"
sleep 0.5
rps() { wrk -t2 -c64 -d"${dur}s" "$1" | sed -nE 's/^Requests\/sec: *([0-9.]+).*/\1/p'; }
lim=$(rps "http://127.0.0.1:$limit_port/")
view=$(rps "http://127.0.0.1:$router_port/api/whatsapp/session/status/session-123")
echo "limit (bare hyper, 2-byte answer): $lim req/s"
echo "router status view (3 KB record):  $view req/s"
echo "ratio: $(echo "scale=3; $view / $lim" | bc)"
