#!/usr/bin/env bash
# Brings the whole MedFlow platform up on this machine and drives a demo scenario
# through its HTTP APIs. It installs what is missing, starts the local stack and
# migrates the database. Then it starts every service in the background, creates the
# first admin and runs `medflow demo`. Idempotent: services from an earlier run are
# restarted.
#
# Services keep running afterwards; `scripts/stop-platform.sh` stops them.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf 'run-platform: %s\n' "$*" >&2; }

scripts/install-deps.sh
log "building the workspace (debug profile)"
cargo build --workspace --bins --quiet
bin="$root/target/debug"

"$bin/medflow" stack up
set -a
# shellcheck disable=SC1091
source .stack/secrets.env
# The command API presigns license document uploads with the S3 store's credentials.
# shellcheck disable=SC1091
source .stack/s3/credentials.env
set +a
if [[ -z ${MEDFLOW_ADMIN_PASSWORD:-} ]]; then
  # A random 32-character password for the demo admin, kept with the other secrets.
  password=$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')
  printf 'MEDFLOW_ADMIN_PASSWORD=%s\n' "$password" >> .stack/secrets.env
  export MEDFLOW_ADMIN_PASSWORD=$password
fi

"$bin/medflow" migrate

scripts/stop-platform.sh --quiet
run_dir="$root/.stack/platform"
mkdir -p "$run_dir"
start() {
  local name=$1
  shift
  setsid "$bin/$name" "$@" > "$run_dir/$name.log" 2>&1 < /dev/null &
  echo $! > "$run_dir/$name.pid"
  log "started $name (pid $!, log $run_dir/$name.log)"
}
start medflow-relay
start medflow-projectors
start medflow-command-api
start medflow-query-api
start medflow-reminder-service

wait_ready() {
  local url=$1
  for _ in $(seq 1 100); do
    if curl -fsS "$url" > /dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  log "$url did not become ready; see the logs in $run_dir"
  return 1
}
wait_ready http://127.0.0.1:8080/health/ready
wait_ready http://127.0.0.1:8081/health/ready
wait_ready http://127.0.0.1:8082/health/ready
wait_ready http://127.0.0.1:8083/health/ready
wait_ready http://127.0.0.1:8084/health/ready

admin_email=${MEDFLOW_DEMO_ADMIN_EMAIL:-admin@medflow.example}
"$bin/medflow" create-admin --email "$admin_email" --name "Platform Admin" --if-missing
"$bin/medflow" demo --admin-email "$admin_email"

cat <<TEXT

MedFlow is running:
  command API  http://127.0.0.1:8080  (docs http://127.0.0.1:8080/docs)
  query API    http://127.0.0.1:8081  (docs http://127.0.0.1:8081/docs)
  relay        http://127.0.0.1:8082/metrics
  projectors   http://127.0.0.1:8083/metrics
  reminders    http://127.0.0.1:8084/health/ready
  admin        $admin_email (password in .stack/secrets.env)
Logs are in $run_dir; stop the services with scripts/stop-platform.sh.
TEXT
