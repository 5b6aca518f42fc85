#!/usr/bin/env bash
# Installs the providers' official SDKs that sign test requests (see
# tests/signers/): a Python venv and a node_modules under target/signers,
# made once and reused while the pinned versions do not change.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${SIGNERS_DIR:-$root/target/signers}
mkdir -p "$dir"
# Tests run in parallel and each may call this: one installs, the others wait.
exec 9>"$dir/.lock"
flock 9
# ESM resolves packages next to the script, so the Node signer lives beside node_modules.
cp "$root"/tests/signers/*.mjs "$dir/"
stamp=$(cat "$root/tests/signers/requirements.txt" "$root/tests/signers/package.json" | sha256sum | cut -c1-16)
if [[ "$(cat "$dir/.stamp" 2>/dev/null)" == "$stamp" ]]; then
  exit 0
fi
echo "setup-signers: installing SDKs into $dir" >&2
python3 -m venv "$dir/venv"
"$dir/venv/bin/pip" install -q --disable-pip-version-check -r "$root/tests/signers/requirements.txt"
cp "$root/tests/signers/package.json" "$dir/package.json"
(cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
echo "$stamp" > "$dir/.stamp"
