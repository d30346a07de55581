#!/usr/bin/env bash
# bench/profile-so4.sh — where the S4 scale-out crowd's time goes, outside `make bench`:
#
#   bench/profile-so4.sh [BUILD_DIR] [THREADS]      (defaults: build, 2)
#
# A smaller S4 scale-out (100,000 users arriving in 10 s, 20 x 1,000 seats,
# --active-max 5000, two instances with --threads THREADS, 2 x 500 connections,
# capped at 20 s) on a fresh PostgreSQL with pg_stat_statements and a fresh Redis.
# Prints the crowd's figures (loadgen flow: paid, steps, CPU of the processes), the
# CPU each of the instances, Redis and PostgreSQL (its backends included) used
# during the crowd, the statements by total time (statements inside functions
# too: bx_write_batch's own) and Redis' commandstats. Everything on loopback under
# a work directory in /tmp, stopped and removed at the end (PROFILE_KEEP=1 keeps
# it). PROFILE_EXPLAIN_MS=N logs the plan of every statement (nested ones too)
# that ran N ms or longer, with its row counts (auto_explain), to the kept work
# directory's pg/postgres.log; PROFILE_EXPLAIN_MS implies PROFILE_KEEP=1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
[[ $BUILD = /* ]] || BUILD=$ROOT/$BUILD
THREADS=${2:-2}
EXPLAIN_MS=${PROFILE_EXPLAIN_MS:-}
[[ -n $EXPLAIN_MS ]] && PROFILE_KEEP=1
BIN=$BUILD/boxoffice
H=$ROOT/tests/harness
W=$(mktemp -d /tmp/boxoffice-profile.XXXXXX)
PIDS=()
finish() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$H/redis.sh" stop "$W/redis" >/dev/null 2>&1 || true
  "$H/pg.sh" stop "$W/pg" >/dev/null 2>&1 || true
  if [[ ${PROFILE_KEEP:-0} = 1 ]]; then echo "profile-so4: work directory kept: $W" >&2; else rm -rf "$W"; fi
}
trap finish EXIT

cc -O2 -Wall -Wextra -Wno-unused-parameter -o "$W/loadgen" "$ROOT/bench/loadgen.c" -lm
# shellcheck disable=SC2046
cc -O2 -Wall -Wextra -Wno-unused-parameter -I"$ROOT/src" -o "$W/seed" "$ROOT/bench/seed.c" \
  "$BUILD/libboxoffice_core.a" $(pkg-config --cflags --libs sqlite3 libpq hiredis libsodium) -lpthread -lm

mkdir -p "$W/pg" "$W/redis"
PG=$("$H/pg.sh" start "$W/pg" 2>/dev/null)
LIBS="'pg_stat_statements'"
[[ -n $EXPLAIN_MS ]] && LIBS+=", 'auto_explain'"
psql -qX "$PG" -c "ALTER SYSTEM SET shared_preload_libraries = $LIBS" >/dev/null
"$H/pg.sh" stop "$W/pg" >/dev/null 2>&1
PG=$("$H/pg.sh" start "$W/pg" 2>/dev/null)
RD=$("$H/redis.sh" start "$W/redis" 2>/dev/null)
psql -qX "$PG" -c "CREATE DATABASE profile" >/dev/null
DB=${PG%/postgres}/profile
psql -qX "$DB" -c "CREATE EXTENSION pg_stat_statements" -c "ALTER SYSTEM SET pg_stat_statements.track = 'all'" >/dev/null
if [[ -n $EXPLAIN_MS ]]; then
  psql -qX "$DB" -c "ALTER SYSTEM SET auto_explain.log_min_duration = $EXPLAIN_MS" \
    -c "ALTER SYSTEM SET auto_explain.log_analyze = on" -c "ALTER SYSTEM SET auto_explain.log_nested_statements = on" >/dev/null
fi
psql -qX "$DB" -c "SELECT pg_reload_conf()" >/dev/null
PGOPTIONS="-c synchronous_commit=off" "$W/seed" --db "$DB" --users 100000 --charge-first 100000 \
  --amount 1000000 --tokens "$W/tokens.txt" --concert "S4:20:1000:50000" >"$W/seed.json"
CID=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["concerts"][0]["concertId"])' "$W/seed.json")
psql -qX "$DB" -c "VACUUM ANALYZE" -c "SELECT pg_stat_statements_reset()" >/dev/null
redis-cli -u "$RD" config resetstat >/dev/null

for port in 19101 19102; do
  "$BIN" serve --listen "127.0.0.1:$port" --db "$DB" --queue "$RD" --threads "$THREADS" --log-level warn \
    --active-max 5000 >"$W/serve-$port.log" 2>&1 &
  PIDS+=($!)
done
for _ in $(seq 50); do
  curl -sf http://127.0.0.1:19101/readyz >/dev/null && curl -sf http://127.0.0.1:19102/readyz >/dev/null && break
  sleep 0.2
done
PM=$(head -1 "$W/pg/pgdata/postmaster.pid")
RP=$(cat "$W/redis/redis.pid")
# cpu_of PID...: "PID COMMAND user_s sys_s" of each process, its children included
# (live ones, and the reaped ones of PostgreSQL's backends in the postmaster's counts).
cpu_of() {
  python3 - "$@" <<'PY'
import os, sys
tck = os.sysconf('SC_CLK_TCK')
def stat(p):
    s = open(f'/proc/{p}/stat').read()
    f = s[s.rindex(')') + 2:].split()
    return s[s.index('(') + 1:s.rindex(')')], int(f[1]), [int(x) for x in f[11:15]]
procs = {}
for d in os.listdir('/proc'):
    if d.isdigit():
        try:
            procs[d] = stat(d)
        except OSError:
            pass
for p in sys.argv[1:]:
    comm, _, t = procs[p]
    u, s = t[0] + t[2], t[1] + t[3]
    for c, (_, pp, tc) in procs.items():
        if pp == int(p):
            u, s = u + tc[0] + tc[2], s + tc[1] + tc[3]
    print(p, comm, u / tck, s / tck)
PY
}
cpu_of "${PIDS[0]}" "${PIDS[1]}" "$RP" "$PM" >"$W/cpu-before.txt"
"$W/loadgen" flow --targets "127.0.0.1:19101,127.0.0.1:19102" --conns 500 --tokens "$W/tokens.txt" --users 100000 \
  --arrival 10 --concert "$CID" --seats-total 20000 --max-time 20 \
  --cpu-pids "${PIDS[0]},${PIDS[1]},$RP,$PM" >"$W/flow.json" 2>"$W/flow.progress"

cpu_of "${PIDS[0]}" "${PIDS[1]}" "$RP" "$PM" >"$W/cpu-after.txt"
echo "CPU during the crowd (s):"
paste "$W/cpu-before.txt" "$W/cpu-after.txt" | awk '{printf "  %-14s user %6.2f  sys %6.2f\n", $2, $7 - $3, $8 - $4}'
python3 - "$W/flow.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print("paid", d["paid"], "sustained/s", d["paid_per_s_sustained"], "admitted", d["admitted"],
      "5xx", d["http_5xx"], "cpu", d.get("cpu"))
for k, v in d["steps"].items():
    print(" ", k, v["count"], "err", v["errors"], "p50 ms", v["latency"]["p50_ms"], "p99 ms", v["latency"]["p99_ms"])
EOF
psql -X -A -F ' | ' "$DB" -c "SELECT calls, round(total_exec_time::numeric, 0) AS ms,
  round((total_exec_time / calls)::numeric, 3) AS ms_per_call, left(regexp_replace(query, '\s+', ' ', 'g'), 120) AS query
  FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 20"
redis-cli -u "$RD" info commandstats | grep cmdstat | sort -t= -k3 -n -r | head -12
