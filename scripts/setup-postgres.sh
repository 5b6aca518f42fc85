#!/usr/bin/env bash
# One PostgreSQL for a whole test run: prints `export DATABASE_URL=...` for
# the caller to eval. With DATABASE_URL already set, that server is used
# as is. Otherwise an ephemeral cluster is made in a temp dir (initdb), on
# a free loopback port, as an unprivileged user (PostgreSQL refuses root),
# from Debian's binaries (installed with apt when missing and we are root).
# Stop it with `scripts/setup-postgres.sh stop DIR` (test.sh does, on exit).
# Fault tests take a server down and bring it back on the same port with
# `halt DIR` and `start DIR`.
#
#   eval "$(scripts/setup-postgres.sh)"     # sets DATABASE_URL, PG_TEST_DIR
set -euo pipefail

# Starts the cluster of $dir on 127.0.0.1:$(cat $dir/port).
start_server() {
  local dir=$1 owner as=()
  owner=$(stat -c %U "$dir/data")
  [[ $(id -u) == 0 && $owner != root ]] && as=(runuser -u "$owner" --)
  # Durable as in production (fsync, synchronous commit); small, for a test box.
  "${as[@]}" "$(cat "$dir/bin")/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$(cat "$dir/port") -c unix_socket_directories=$dir -c max_connections=200 -c shared_buffers=64MB" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
}

# Stops the cluster of $dir at once (as a crash or a pulled cable would).
halt_server() {
  local dir=$1 owner as=()
  [[ -f $dir/data/postmaster.pid ]] || return 0
  owner=$(stat -c %U "$dir/data")
  [[ $(id -u) == 0 && $owner != root ]] && as=(runuser -u "$owner" --)
  "${as[@]}" "$(cat "$dir/bin")/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}

case ${1:-} in
  stop) halt_server "$2"; rm -rf "$2"; exit 0 ;;
  halt) halt_server "$2"; exit 0 ;;
  start) start_server "$2"; exit 0 ;;
esac

if [[ -n ${DATABASE_URL:-} ]]; then
  echo "export DATABASE_URL='$DATABASE_URL'"
  exit 0
fi

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z $bin || ! -x $bin/initdb ]]; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "setup-postgres: installing Debian's postgresql package" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  else
    echo "setup-postgres: no PostgreSQL binaries in /usr/lib/postgresql/*/bin; install Debian's postgresql package or set DATABASE_URL" >&2
    exit 1
  fi
fi

dir=$(mktemp -d /tmp/router-pg.XXXXXX)
echo "$bin" >"$dir/bin"
as=()
if [[ $(id -u) == 0 ]]; then
  chown nobody "$dir"
  chmod 755 "$dir"
  as=(runuser -u nobody --)
fi
python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' >"$dir/port"
"${as[@]}" "$bin/initdb" -D "$dir/data" -U router --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
  { cat "$dir/initdb.log" >&2; exit 1; }
start_server "$dir"
echo "export DATABASE_URL='postgres://router@127.0.0.1:$(cat "$dir/port")/postgres' PG_TEST_DIR='$dir'"
