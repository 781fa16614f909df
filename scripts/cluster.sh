#!/usr/bin/env bash
# `make cluster`: a local redis-server and three lkpool nodes on loopback, sharing it, until
# Ctrl-C (or SIGTERM), which drains and stops them all. For trying the cluster out:
#   nodes   http://127.0.0.1:8881 (alpha), :8882 (bravo), :8883 (charlie)
#   redis   redis://127.0.0.1:6390/0, nothing saved
# Every variable of lkpool's settings passes through (e.g. NUM_WARM=0 make cluster).
set -eu
PY=${PY:-.venv/bin/python}
REDIS_PORT=${REDIS_PORT:-6390}
FIRST_PORT=${FIRST_PORT:-8881}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}
export CLUSTER_SECRET=${CLUSTER_SECRET:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export MAX_INSTANCES=${MAX_INSTANCES:-2}
pids=()
redis_pid=""
stop() {  # the nodes drain and leave first, then Redis goes
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "$redis_pid" ] && kill -TERM "$redis_pid" 2>/dev/null || true
  wait
}
trap stop INT TERM EXIT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --loglevel warning &
redis_pid=$!
port=$FIRST_PORT
for name in alpha bravo charlie; do
  NODE_NAME=$name "$PY" -m lkpool serve --host 127.0.0.1 --port "$port" &
  pids+=($!)
  echo "node $name: http://127.0.0.1:$port"
  port=$((port + 1))
done
wait
