#!/usr/bin/env bash
# Stops the MedFlow services that scripts/run-platform.sh started (SIGTERM, then
# SIGKILL after 10 s). The local stack keeps running; `medflow stack down` stops it.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
run_dir="$root/.stack/platform"
quiet=${1:-}
shopt -s nullglob
for pid_file in "$run_dir"/*.pid; do
  pid=$(cat "$pid_file")
  name=$(basename "$pid_file" .pid)
  # Only signal the pid if it still runs the binary we started.
  if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "target/debug/$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$pid" 2>/dev/null || true
    [[ $quiet == --quiet ]] || printf 'stop-platform: stopped %s (pid %s)\n' "$name" "$pid" >&2
  fi
  rm -f "$pid_file"
done
