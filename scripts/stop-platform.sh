#!/usr/bin/env bash
# Stops the MedFlow services that scripts/run-platform.sh started (SIGTERM, then
# SIGKILL after 10 s). The local stack keeps running; `medflow stack down` stops it.
#
# Usage: scripts/stop-platform.sh [--quiet] [SERVICE...]
# Without service names (such as medflow-reminder-service) it stops every service.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
run_dir="$root/.stack/platform"
quiet=
if [[ ${1:-} == --quiet ]]; then
  quiet=yes
  shift
fi
shopt -s nullglob
if (($#)); then
  pid_files=()
  for name in "$@"; do
    pid_files+=("$run_dir/$name.pid")
  done
else
  pid_files=("$run_dir"/*.pid)
fi
for pid_file in "${pid_files[@]}"; do
  [[ -f $pid_file ]] || continue
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
    [[ -n $quiet ]] || printf 'stop-platform: stopped %s (pid %s)\n' "$name" "$pid" >&2
  fi
  rm -f "$pid_file"
done
