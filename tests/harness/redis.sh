#!/usr/bin/env bash
# redis.sh — a throw-away Redis for tests (the Redis waiting room, scale-out mode).
#   redis.sh start DIR [--port N] [--appendonly]
#                        starts redis-server on 127.0.0.1 on a free random port (or
#                        on port N: a restart on the port clients know), daemonized,
#                        everything (pid, log, port, data) inside DIR, no persistence
#                        unless --appendonly (AOF in DIR, appendfsync everysec, as
#                        deploy/redis.conf: a stop + start then keeps every key);
#                        prints redis://127.0.0.1:PORT/0 once PING answers.
#   redis.sh stop DIR    shuts it down (nosave; an AOF is still flushed) and waits
#                        until the process is gone.
# Works as root and as any user; stdout carries only the URL, diagnostics go to stderr.
set -euo pipefail

die() {
  echo "redis.sh: $*" >&2
  exit 1
}

usage() {
  die "usage: redis.sh start DIR [--port N] [--appendonly] | redis.sh stop DIR"
}

# True while the process of the pidfile in $1 runs.
running() {
  local pid
  [[ -s $1/redis.pid ]] || return 1
  pid=$(<"$1/redis.pid")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

port_in_use() {
  ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}

start() {
  local dir=$1 port try i fixed="" aof=no
  shift
  while (($#)); do
    case $1 in
    --port) [[ ${2:-} =~ ^[0-9]+$ ]] || usage; fixed=$2; shift 2 ;;
    --appendonly) aof=yes; shift ;;
    *) usage ;;
    esac
  done
  command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install redis-server)"
  command -v redis-cli >/dev/null || die "redis-cli is not installed (apt-get install redis-tools)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if running "$dir"; then
    die "a Redis from $dir is already running (pid $(<"$dir/redis.pid")); stop it first"
  fi
  rm -f "$dir/redis.pid" "$dir/port"
  for try in 1 2 3 4 5 6 7 8; do
    if [[ -n $fixed ]]; then
      port=$fixed
      port_in_use "$port" && { sleep 0.2; continue; }
    else
      port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
      port_in_use "$port" && continue
    fi
    # another process may take the port between the check and the bind: then retry
    if ! redis-server --bind 127.0.0.1 --port "$port" --daemonize yes \
      --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
      --save "" --appendonly "$aof" --appendfsync everysec --protected-mode yes --databases 16 >&2; then
      continue
    fi
    for i in $(seq 1 100); do
      if [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]] && running "$dir"; then
        echo "$port" >"$dir/port"
        echo "redis://127.0.0.1:$port/0"
        return 0
      fi
      # the daemon exits at once when it cannot bind; give it a moment to write its pidfile otherwise
      if ((i > 10)) && ! running "$dir" && ! port_in_use "$port"; then
        break
      fi
      sleep 0.05
    done
    echo "redis.sh: attempt $try on port $port failed; log tail:" >&2
    tail -n 5 "$dir/redis.log" >&2 2>/dev/null || true
    if running "$dir"; then
      kill "$(<"$dir/redis.pid")" 2>/dev/null || true
    fi
    rm -f "$dir/redis.pid"
  done
  die "could not start redis-server (see $dir/redis.log)"
}

stop() {
  local dir=$1 pid i
  [[ -d $dir ]] || die "no such directory: $dir"
  if ! running "$dir"; then
    rm -f "$dir/redis.pid" "$dir/port"
    return 0
  fi
  pid=$(<"$dir/redis.pid")
  if [[ -s $dir/port ]]; then
    redis-cli -h 127.0.0.1 -p "$(<"$dir/port")" shutdown nosave >/dev/null 2>&1 || true
  fi
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    if ((i == 40)); then
      kill "$pid" 2>/dev/null || true
    fi
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null || true
    sleep 0.1
  fi
  rm -f "$dir/redis.pid" "$dir/port"
}

(($# >= 2)) || usage
case $1 in
start) shift; start "$@" ;;
stop) (($# == 2)) || usage; stop "$2" ;;
*) usage ;;
esac
