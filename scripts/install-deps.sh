#!/usr/bin/env bash
# Installs what the local stack and the build need and the machine lacks:
# Debian packages for rdkafka's cmake build, the Kafka-protocol broker (nisshi),
# the S3 server (s3s-fs), the SMTP catcher (maildev) and LiveKit's Node.js server
# SDK (livekit-server-sdk), which tests use to verify video tokens and sign
# webhooks, and the Python FHIR models (fhir.resources) that validate the audit export. Idempotent: a tool that is already installed at its pinned version is
# not rebuilt.
set -euo pipefail

NISSHI_VERSION=0.7.0-pre.2
S3S_FS_VERSION=0.14.1
MAILDEV_VERSION=3.0.0
# 2.19.2 requires Node.js 19 or later.
LIVEKIT_SERVER_SDK_VERSION=2.19.2
# FHIR model library that tests use to validate the AuditEvent export.
FHIR_RESOURCES_VERSION=7.1.0

root=$(cd "$(dirname "$0")/.." && pwd)
tools="$root/.stack/tools"
mkdir -p "$tools"

log() { printf 'install-deps: %s\n' "$*" >&2; }

apt_packages=(cmake libcurl4-openssl-dev libssl-dev pkg-config libsasl2-dev)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# cargo_tool NAME VERSION BINARY [extra cargo install args...]
cargo_tool() {
  local name=$1 version=$2 binary=$3
  shift 3
  # grep without -q reads all of its input. With -q it could exit at the first match,
  # and the SIGPIPE that cargo then receives would fail the pipeline under pipefail.
  if cargo install --list | grep "^$name v$version:" >/dev/null; then
    return
  fi
  log "cargo install $name $version (slow on 2 cores)"
  cargo install "$name" --version "$version" --locked "$@"
  command -v "$binary" >/dev/null
}

cargo_tool nisshi "$NISSHI_VERSION" nisshi --features libsql,dynostore
cargo_tool s3s-fs "$S3S_FS_VERSION" s3s-fs --features binary

if [[ ! -x "$tools/node_modules/.bin/maildev" ]] || \
   [[ $(node -p "require('$tools/node_modules/maildev/package.json').version" 2>/dev/null) != "$MAILDEV_VERSION" ]]; then
  log "npm install maildev@$MAILDEV_VERSION"
  npm install --silent --no-audit --no-fund --prefix "$tools" "maildev@$MAILDEV_VERSION" >/dev/null
fi

if [[ $(node -p "require('$tools/node_modules/livekit-server-sdk/package.json').version" 2>/dev/null) != "$LIVEKIT_SERVER_SDK_VERSION" ]]; then
  log "npm install livekit-server-sdk@$LIVEKIT_SERVER_SDK_VERSION"
  npm install --silent --no-audit --no-fund --prefix "$tools" "livekit-server-sdk@$LIVEKIT_SERVER_SDK_VERSION" >/dev/null
fi

python="$tools/python/bin/python"
if [[ ! -x "$python" ]]; then
  log "python3 -m venv $tools/python"
  python3 -m venv "$tools/python"
fi
if [[ $("$python" -c 'import importlib.metadata as m; print(m.version("fhir.resources"))' 2>/dev/null) != "$FHIR_RESOURCES_VERSION" ]]; then
  log "pip install fhir.resources==$FHIR_RESOURCES_VERSION"
  "$python" -m pip install --quiet --disable-pip-version-check "fhir.resources==$FHIR_RESOURCES_VERSION"
fi

log "all dependencies present"
