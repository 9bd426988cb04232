#!/usr/bin/env bash
# Run a command with local services up; stop afterwards only the services this script started,
# even when the command fails or is interrupted.
#   infra/with-services.sh kafka,cassandra -- pytest -q
#   infra/with-services.sh kafka,flink -- python job.py   # flink: JobManager + TaskManagers (make flink-venv first)
# Kafka is always started (it is `infra up`'s default); every other name becomes `--with <name>`.
set -euo pipefail
services="$1"; shift
[ "${1:-}" = "--" ] && shift
bin="$(dirname "$0")/../.venv/bin"
started_file="$(mktemp)"
cleanup() {
  if [ -s "$started_file" ]; then
    only=()
    while read -r name; do [ -n "$name" ] && only+=(--only "$name"); done < "$started_file"
    "$bin/affresco" infra down "${only[@]}" || true
  fi
  rm -f "$started_file"
}
trap cleanup EXIT
with=()
IFS=',' read -ra wanted <<< "$services"
for s in "${wanted[@]}"; do [ "$s" = kafka ] || with+=(--with "$s"); done
"$bin/affresco" infra up "${with[@]}" --started-file "$started_file"
"$@"
