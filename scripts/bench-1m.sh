#!/usr/bin/env bash
# The router on a log that already holds 1,000,000 events (issue 19's
# figure): fills one once (`cargo bench --bench log`), then, for each
# routes dir, starts the dist router on a copy, times it to its first
# answer, loads it c64 and prints req/s and peak RSS.
#
#   scripts/bench-1m.sh                        # ingest only, then store sink
#   FILL=/path DURATION=8 scripts/bench-1m.sh dir...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH_HARNESS_DIR:-$root/../shared/bench}
fill=${FILL:-/tmp/router-fill-1m}
work=${WORK:-/tmp/router-bench-1m}
duration=${DURATION:-8}
(($#)) || set -- "$root/scripts/bench-routes-ingest" "$root/scripts/bench-routes"
command -v wrk >/dev/null || { echo "wrk is missing (apt-get install wrk)" >&2; exit 1; }
cargo build --profile dist --bin router --manifest-path "$root/Cargo.toml" -q
[[ -d $fill ]] || cargo bench --manifest-path "$root/Cargo.toml" --bench log -- 1000000 "$fill"
export BENCH_SECRET=${BENCH_SECRET:-whsec_bench_secret_0123456789abcdef}
url=http://127.0.0.1:18083/webhooks/stripe
for routes in "$@"; do
  rm -rf "$work"; mkdir -p "$work"; cp -r "$fill" "$work/data"
  mapfile -t sigs < <(python3 "$bench/load/mkreq.py" "$work" "$BENCH_SECRET")
  export BENCH_BODY_FILE=$work/body.json BENCH_STRIPE_SIG=${sigs[0]} BENCH_HUB_SIG=${sigs[1]}
  start=$(date +%s.%N)
  "$root/target/dist/router" serve --routes "$routes" --data "$work/data" --listen 127.0.0.1:18083 \
    --admin-listen off --log-format json >"$work/router.log" 2>&1 &
  pid=$!
  until curl -s -o /dev/null "$url"; do kill -0 "$pid" || { cat "$work/router.log"; exit 1; }; sleep 0.05; done
  ready=$(python3 -c "import time; print(f'{time.time() - $start:.2f}')")
  rps=$(wrk -t2 -c64 -d"${duration}s" -s "$bench/load/bench.lua" "$url" | sed -n 's/^RESULT .*rps=\([0-9.]*\).*/\1/p')
  echo "$(basename "$routes"): ready after ${ready} s, ${rps} req/s c64, peak RSS $(awk '/^VmHWM:/{printf "%.1f MiB", $2/1024}' "/proc/$pid/status")"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
