#!/usr/bin/env bash
# Debian's chromium for the browser tests (driven by playwright-core, which
# scripts/setup-signers.sh installs). Installed once with apt when missing.
set -euo pipefail
command -v chromium >/dev/null && exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "setup-browser: chromium is missing; run as root, or: sudo apt-get install chromium" >&2
  exit 1
fi
# Tests run in parallel: one installs, the others wait.
exec 9>/tmp/router-setup-browser.lock
flock 9
command -v chromium >/dev/null && exit 0
echo "setup-browser: installing chromium with apt" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
