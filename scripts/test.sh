#!/usr/bin/env bash
# The test command (README): installs the provider SDKs the signature tests
# sign with and cargo-deb, starts one PostgreSQL for the whole run (or uses DATABASE_URL),
# then one release build shared by unit tests, integration tests and the
# crash test, which runs the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
# Official provider SDKs that sign the signature tests' requests (cached).
scripts/setup-signers.sh
# cargo-deb, for the Debian package's test (cached in ~/.cargo/bin).
scripts/setup-packaging.sh
# The postgres sink's tests: each makes a database of its own in it.
eval "$(scripts/setup-postgres.sh)"
if [[ -n ${PG_TEST_DIR:-} ]]; then
  trap 'scripts/setup-postgres.sh stop "$PG_TEST_DIR"' EXIT
fi
export DATABASE_URL
cargo nextest run --release --no-fail-fast "$@"
# The same delivery, ingest and admin tests again with the event log in
# PostgreSQL (`--store postgres://`): a database of its own per test.
ROUTER_TEST_STORE=postgres cargo nextest run --release --no-fail-fast \
  -E 'binary(it) & (test(/^delivery::/) | test(/^ingest::/) | test(/^admin::/))' "$@"
