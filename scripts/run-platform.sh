#!/usr/bin/env bash
# Brings the whole MedFlow platform up on this machine, seeds it through its HTTP APIs
# and drives a scripted clinic day through them. It installs what is missing, starts
# the local stack, migrates the database and starts every service in the background.
# Then it creates the first admin, runs `medflow seed` and `medflow demo`, and keeps
# the platform running until interrupted. Idempotent: services from an earlier run are
# restarted, and every seeding run adds accounts with fresh e-mail addresses.
#
# Usage: scripts/run-platform.sh [--exit] [--no-seed] [--doctors N] [--patients N]
#   --exit       stop the services after the scenario and exit (for CI)
#   --no-seed    skip the seeding, for a database seeded by an earlier run
#   --doctors N  doctors to seed (default 200); --patients N patients (default 2000)
#
# During the scenario alone, the command API opens video rooms
# MEDFLOW_DEMO_VIDEO_JOIN_BEFORE_MINUTES (default 120) before the start instead of 10.
# The reminder service's clock then runs MEDFLOW_DEMO_CLOCK_SPEED (default 120) times as
# fast as real time. So a booking made now is inside its video window, and its
# 15-minute reminder is sent within a minute. Both services are restarted with their
# defaults afterwards. `scripts/stop-platform.sh` stops the services.
set -euo pipefail

exit_after=
seed=yes
seed_args=()
while (($#)); do
  case $1 in
    --exit) exit_after=yes ;;
    --no-seed) seed= ;;
    --doctors | --patients)
      [[ $# -ge 2 ]] || { echo "run-platform: $1 needs a number" >&2; exit 2; }
      seed_args+=("$1" "$2")
      shift
      ;;
    *)
      echo "run-platform: unknown option '$1'; see the usage at the top of $0" >&2
      exit 2
      ;;
  esac
  shift
done

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
# PostgreSQL is the machine's server, shared by every checkout: a database filled by
# another checkout contains data keys wrapped under that checkout's master keys.
if ! key_report=$("$bin/medflow" keys check 2>&1); then
  printf '%s\n' "$key_report" >&2
  log "database medflow holds personal data sealed under master keys other than those in .stack/secrets.env, probably by another checkout of MedFlow on this machine"
  log "run 'target/debug/medflow stack down --purge' to drop that database (and this checkout's stack data), then run this script again"
  exit 1
fi

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
# Waits up to 60 s: the consumers are ready only once they have joined their groups.
wait_ready() {
  local url=$1
  for _ in $(seq 1 300); do
    if curl -fsS "$url" > /dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  log "$url did not become ready; see the logs in $run_dir"
  return 1
}
# Readiness URLs of the five services by name.
declare -A ready_url=(
  [medflow-command-api]=http://127.0.0.1:8080/health/ready
  [medflow-query-api]=http://127.0.0.1:8081/health/ready
  [medflow-relay]=http://127.0.0.1:8082/health/ready
  [medflow-projectors]=http://127.0.0.1:8083/health/ready
  [medflow-reminder-service]=http://127.0.0.1:8084/health/ready
)
# Stops the named services and starts them again with the caller's environment.
restart() {
  scripts/stop-platform.sh --quiet "$@"
  local name
  for name in "$@"; do
    start "$name"
  done
  for name in "$@"; do
    wait_ready "${ready_url[$name]}"
  done
}

# A failed step stops every service, so none keeps the seeding or demo settings.
on_exit() {
  local status=$?
  if ((status != 0)); then
    log "failed with exit status $status; stopping the services (logs are in $run_dir)"
    scripts/stop-platform.sh --quiet
  fi
}
trap on_exit EXIT

# While seeding, every client shares 127.0.0.1, so the per-address login limit is
# lifted, and the 2 200 demo accounts are hashed with scrypt N=2^14 instead of 2^17,
# an eighth of the work per hash.
MEDFLOW_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE=1000000 MEDFLOW_PASSWORD_SCRYPT_LOG_N=14 \
  restart medflow-relay medflow-projectors medflow-command-api medflow-query-api medflow-reminder-service

admin_email=${MEDFLOW_DEMO_ADMIN_EMAIL:-admin@medflow.example}
"$bin/medflow" create-admin --email "$admin_email" --name "Platform Admin" --if-missing
if [[ -n $seed ]]; then
  "$bin/medflow" seed --admin-email "$admin_email" "${seed_args[@]}"
fi

# The scenario's settings: video rooms open early enough for a booking made now, and
# reminders fall due within a minute.
MEDFLOW_VIDEO_JOIN_BEFORE_MINUTES=${MEDFLOW_DEMO_VIDEO_JOIN_BEFORE_MINUTES:-120} \
  MEDFLOW_CLOCK_SPEED=${MEDFLOW_DEMO_CLOCK_SPEED:-120} \
  restart medflow-command-api medflow-reminder-service
"$bin/medflow" demo --admin-email "$admin_email"

log "restarting the command API and the reminder service with their default settings"
restart medflow-command-api medflow-reminder-service

cat <<TEXT

MedFlow is running:
  command API  http://127.0.0.1:8080  (OpenAPI docs http://127.0.0.1:8080/docs/)
  query API    http://127.0.0.1:8081  (OpenAPI docs http://127.0.0.1:8081/docs/)
  mail catcher http://127.0.0.1:1080/index.html  (every e-mail the platform sent)
  metrics      http://127.0.0.1:8082/metrics (relay), :8083/metrics (projectors),
               :8084/metrics (reminders), :8080/metrics and :8081/metrics (APIs)
  admin        $admin_email (password in .stack/secrets.env)
Logs are in $run_dir.
TEXT

if [[ -n $exit_after ]]; then
  scripts/stop-platform.sh
  exit 0
fi
log "the platform keeps running; press Ctrl-C (or run scripts/stop-platform.sh) to stop the services; the stack stays up"
sleeper=
trap '[[ -n $sleeper ]] && kill "$sleeper" 2>/dev/null; scripts/stop-platform.sh; exit 0' INT TERM
# Ends once scripts/stop-platform.sh, run from elsewhere, has removed every pid file.
shopt -s nullglob
while true; do
  sleep 5 &
  sleeper=$!
  wait "$sleeper" || true
  pid_files=("$run_dir"/*.pid)
  if ((${#pid_files[@]} == 0)); then
    log "the services were stopped; exiting"
    exit 0
  fi
done
