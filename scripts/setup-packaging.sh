#!/usr/bin/env bash
# Installs cargo-deb, which scripts/build-deb.sh and the package test use
# (a tool, not a dependency: about a minute to build, once per machine).
set -euo pipefail
version=3.8.0
if [[ $(cargo deb --version 2> /dev/null) != *"$version"* ]]; then
  cargo install cargo-deb --locked --version "$version" --quiet
fi
