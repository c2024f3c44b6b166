#!/usr/bin/env bash
# Runs every test: installs what is missing, builds all binaries (the end-to-end tests
# start some of them as child processes), brings the local stack up and runs the
# whole workspace with cargo-nextest. Extra arguments go to `cargo nextest run`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/install-deps.sh
cargo build --workspace --bins --quiet
target/debug/medflow stack up
cargo nextest run --workspace --no-fail-fast "$@"
