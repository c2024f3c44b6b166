#!/usr/bin/env bash
# Runs the benchmark suite and records it. It installs what is missing, brings the local
# stack up (PostgreSQL roles, mail catcher), builds the release binaries and runs every
# scenario of `medflow-bench`. The benchmark writes the targets, the measured values,
# the machine and the command into docs/benchmarks.md between its marker comments.
# Extra arguments go to `medflow-bench` before the scenario, for example
# `scripts/bench.sh --seconds 10`. Takes 10 to 15 minutes on 2 cores after the build.
#
# Run it on an otherwise idle machine: the services, PostgreSQL and the load generator
# share the cores, so other work skews the figures.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

scripts/install-deps.sh
cargo build --workspace --bins --quiet
target/debug/medflow stack up
cargo build --release --quiet -p medflow-cli -p medflow-bench
target/release/medflow-bench --write-report docs/benchmarks.md "$@" all
