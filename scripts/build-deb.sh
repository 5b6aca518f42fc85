#!/usr/bin/env bash
# Builds the Debian package (cargo-deb; `scripts/setup-packaging.sh` installs
# it): the router built with the dist profile, its systemd unit, sysusers and
# tmpfiles entries, shell completions and man pages generated from that very
# binary, and the shipped routes.d as conffiles in /etc/router/routes.d.
#
#   scripts/build-deb.sh                      # -> target/debian/webhook-router_<v>-1_<arch>.deb
#   scripts/build-deb.sh --profile release --no-build --fast -o DIR   # what the test does
set -euo pipefail
cd "$(dirname "$0")/.."

profile=dist build=1 output=target/debian fast=()
while (($#)); do
  case $1 in
    --profile) profile=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --fast) fast=(--fast); shift ;;
    -o | --output) output=$2; shift 2 ;;
    *) echo "usage: $0 [--profile P] [--no-build] [--fast] [-o DIR]" >&2; exit 2 ;;
  esac
done

command -v cargo-deb > /dev/null || { echo "cargo-deb is missing: run scripts/setup-packaging.sh" >&2; exit 1; }
if ((build)); then
  cargo build --locked --profile "$profile" --bin router
fi

# Generated from the binary being packaged, so they always match its flags.
dir=${CARGO_TARGET_DIR:-target}/$profile
bin=$dir/router
[[ -x $bin ]] || { echo "$bin is not built (drop --no-build)" >&2; exit 1; }
rm -rf "$dir/package"
mkdir -p "$dir/package/man"
"$bin" completions bash > "$dir/package/router.bash"
"$bin" completions zsh > "$dir/package/_router"
"$bin" completions fish > "$dir/package/router.fish"
"$bin" man --dir "$dir/package/man"
# Compressed as Debian policy asks (cargo-deb leaves files under target/ as they are).
gzip -9n "$dir/package/man"/*.1

mkdir -p "$output"
# The profile decides what is stripped (dist: the DWARF, keeping the symbol
# table for backtraces), not cargo-deb's own strip.
cargo deb --locked --no-build --no-strip --profile "$profile" --output "$output" "${fast[@]}"
