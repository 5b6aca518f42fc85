#!/usr/bin/env bash
# The test command (README): installs the provider SDKs the signature tests
# sign with, then one release build shared by unit tests, integration tests
# and the crash test, which runs the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
# Official provider SDKs that sign the signature tests' requests (cached).
scripts/setup-signers.sh
exec cargo nextest run --release --no-fail-fast "$@"
