#!/usr/bin/env bash
# The test command (README): one release build shared by unit tests,
# integration tests and the crash test, which runs the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo nextest run --release --no-fail-fast "$@"
