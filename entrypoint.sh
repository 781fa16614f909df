#!/usr/bin/env bash
# Container entry point: clear what a previous run of this container left behind, start
# PulseAudio when audio is on, then become `lkpool serve` (so signals reach it directly).
#
#   docker run lkpool                    -> lkpool serve --host $HOST (0.0.0.0: without
#                                           TOKEN it generates one, prints it once, needs it)
#   docker run lkpool --num-warm 2       -> the same, with those flags
#   docker run lkpool publish URL ...    -> any lkpool command
#   docker run lkpool bash               -> anything else, as is
set -euo pipefail

profile_base="${CHROMIUM_PROFILE_BASE_DIR:-/tmp/lkpool-profiles}"
shm_dir="${LKPOOL_SHM_DIR:-/dev/shm}"  # where frame buffers live; tests point it elsewhere

log() { printf 'entrypoint: %s\n' "$*" >&2; }

purge_leftovers() {
  # A restarted container keeps its filesystem. Profiles of instances that died with it
  # would pile up, and their Singleton* locks make a new Chromium refuse the folder. Only
  # lkpool's own folders (lkpool-*) are removed, whatever the base directory is.
  mkdir -p -- "$profile_base"
  local n
  n=$(find "$profile_base" -mindepth 1 -maxdepth 1 -name 'lkpool-*' | wc -l)
  # with each one, the folder of Chromium's singleton socket that it links to in /tmp
  local link folder
  for link in "$profile_base"/lkpool-*/SingletonSocket; do
    [ -L "$link" ] || continue
    folder=$(dirname -- "$(readlink -- "$link")")
    case $folder in /*/org.chromium.Chromium.*) [ -L "$folder" ] || rm -rf -- "$folder" ;; esac
  done
  find "$profile_base" -mindepth 1 -maxdepth 1 -name 'lkpool-*' -exec rm -rf -- {} +
  find "$profile_base" -maxdepth 3 -name 'Singleton*' -delete 2>/dev/null || true
  # frame buffers (lkpool_<pid>_...) whose creator is gone; live ones are left alone, so
  # this is safe outside a container too. (Xvfb clears its own stale locks.)
  local f pid
  for f in "$shm_dir"/lkpool_*; do
    [ -e "$f" ] || continue
    pid=${f##*/lkpool_}
    pid=${pid%%_*}
    case $pid in '' | *[!0-9]*) continue ;; esac
    [ -d "/proc/$pid" ] || rm -f -- "$f"
  done
  [ "$n" -eq 0 ] || log "removed $n leftover profile folder(s) from $profile_base"
}

audio_on() {
  case "${AUDIO:-true}" in
    0 | false | False | FALSE | no | off) return 1 ;;
    *) return 0 ;;
  esac
}

start_pulseaudio() {
  audio_on || return 0
  if ! command -v pulseaudio >/dev/null 2>&1; then
    log "pulseaudio is not installed: pages will have no audio"
    return 0
  fi
  local runtime="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
  mkdir -p -- "$runtime" && chmod 0700 -- "$runtime"
  pactl info >/dev/null 2>&1 && return 0
  pulseaudio --start --exit-idle-time=-1 --log-target=stderr || true
  for _ in $(seq 50); do
    pactl info >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  log "pulseaudio did not start: pages will have no audio"
}

purge_leftovers
start_pulseaudio

case "${1:-}" in
  "" | -*) exec lkpool serve --host "${HOST:-0.0.0.0}" "$@" ;;
  serve | publish | screenshot) exec lkpool "$@" ;;
  *) exec "$@" ;;
esac
