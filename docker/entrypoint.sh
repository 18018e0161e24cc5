#!/usr/bin/env bash
# Plus Ultra container entrypoint: one image, one sub-command per role.
#
#   serve              the inference API (plus-ultra serve) on 0.0.0.0:$PLUS_ULTRA_PORT
#   predict            offline inference over the database (plus-ultra predict)
#   train | pretrain | finetune | promote | fixture | ingest | validate | lineage
#                      the plus-ultra command of that name
#   dagster-webserver  the Dagster UI on 0.0.0.0:$DAGSTER_WEBSERVER_PORT, workspace $DAGSTER_WORKSPACE
#   dagster-daemon     schedules, sensors, the run queue
#   code-server        the user-code gRPC server (plus_ultra_assets.definitions) on 0.0.0.0:$DAGSTER_GRPC_PORT
#   shell | <command>  anything else runs as given
#
# Every plus-ultra sub-command gets --config "$PLUS_ULTRA_CONFIG" unless the arguments already
# name one. Extra arguments are passed through ("serve --checkpoint /models/model.pt").
set -euo pipefail

PLUS_ULTRA_CONFIG="${PLUS_ULTRA_CONFIG:-/opt/plus_ultra/configs/smoke.yaml}"
PLUS_ULTRA_PORT="${PLUS_ULTRA_PORT:-8000}"
DAGSTER_WEBSERVER_PORT="${DAGSTER_WEBSERVER_PORT:-3000}"
DAGSTER_GRPC_PORT="${DAGSTER_GRPC_PORT:-4000}"
DAGSTER_WORKSPACE="${DAGSTER_WORKSPACE:-/opt/plus_ultra/docker/workspace.yaml}"
PLUS_ULTRA_BIN="${PLUS_ULTRA_BIN:-plus-ultra}"
DAGSTER_BIN="${DAGSTER_BIN:-dagster}"

usage() {  # the comment block at the top of this file
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

has_config() {
  for arg in "$@"; do
    case "$arg" in --config|-c|--config=*) return 0 ;; esac
  done
  return 1
}

with_config() {  # plus-ultra <command> [--config $PLUS_ULTRA_CONFIG] args...
  local command="$1"; shift
  if has_config "$@"; then
    exec "$PLUS_ULTRA_BIN" "$command" "$@"
  fi
  exec "$PLUS_ULTRA_BIN" "$command" --config "$PLUS_ULTRA_CONFIG" "$@"
}

role="${1:-serve}"
[ "$#" -gt 0 ] && shift

case "$role" in
  serve)
    if has_config "$@"; then
      exec "$PLUS_ULTRA_BIN" serve --host 0.0.0.0 --port "$PLUS_ULTRA_PORT" "$@"
    fi
    exec "$PLUS_ULTRA_BIN" serve --config "$PLUS_ULTRA_CONFIG" --host 0.0.0.0 --port "$PLUS_ULTRA_PORT" "$@"
    ;;
  predict|train|pretrain|finetune|promote|regimes)
    with_config "$role" "$@"
    ;;
  fixture|ingest|validate|lineage|report|outputs|sql|profile|features)
    exec "$PLUS_ULTRA_BIN" "$role" "$@"
    ;;
  dagster-webserver)
    exec "${DAGSTER_WEBSERVER_BIN:-dagster-webserver}" -h 0.0.0.0 -p "$DAGSTER_WEBSERVER_PORT" -w "$DAGSTER_WORKSPACE" "$@"
    ;;
  dagster-daemon)
    exec "${DAGSTER_DAEMON_BIN:-dagster-daemon}" run -w "$DAGSTER_WORKSPACE" "$@"
    ;;
  code-server)
    exec "$DAGSTER_BIN" code-server start -h 0.0.0.0 -p "$DAGSTER_GRPC_PORT" -m plus_ultra_assets.definitions "$@"
    ;;
  help|-h|--help)
    usage
    ;;
  shell)
    exec bash "$@"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
