#!/usr/bin/env bash
# bench/relay-check.sh — checks bench/relay.c in front of a running PostgreSQL and
# Redis before make bench trusts what it measures through it.
#
#   bench/relay-check.sh RELAY_BIN PG_URL PG_RELAY_PORT REDIS_URL REDIS_RELAY_PORT DELAY_US
#
# The relays on PG_RELAY_PORT and REDIS_RELAY_PORT must already forward to PG_URL
# and REDIS_URL with DELAY_US each way (bench/run.sh starts them). Measures:
#   - round trip of `SELECT 1` (pgbench, one client, prepared) and of a Redis PING
#     (redis-benchmark, one client), medians, straight and through the relay: the relay must
#     add 2 x DELAY_US (the ideal), not less, and not much more;
#   - ten statements in one pgbench pipeline, and Redis PINGs 16 at a time: about one
#     round trip for all of them (pipelining is kept);
#   - pgbench with 16 clients through it: no failed transaction;
#   - 1 MiB SET + GET + DEL through the Redis relay then a half-close: every byte back
#     in order, and the end of stream both ways (Redis closes only after our FIN);
#   - a relay to a port where nothing listens: the client's connection ends at once.
# Prints one JSON object on stdout with the figures, "ok" and, when not ok, why.
set -euo pipefail
[[ $# -eq 6 ]] || { echo "usage: relay-check.sh RELAY_BIN PG_URL PG_RELAY_PORT REDIS_URL REDIS_RELAY_PORT DELAY_US" >&2; exit 2; }
RELAY=$1 PG_URL=$2 PG_RPORT=$3 REDIS_URL=$4 RD_RPORT=$5 DELAY_US=$6
PG_RURL=$(sed -E "s/:[0-9]+\//:$PG_RPORT\//" <<<"$PG_URL")
RD_PORT=$(sed -E 's|.*:([0-9]+)/.*|\1|' <<<"$REDIS_URL")
T=$(mktemp -d /tmp/relay-check.XXXXXX)
DEAD_PID=""
cleanup() {
    [[ -n $DEAD_PID ]] && kill "$DEAD_PID" 2>/dev/null && wait "$DEAD_PID" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

echo 'SELECT 1;' >"$T/one.sql"
{
    printf '%s\n' '\startpipeline'
    for _ in $(seq 10); do echo 'SELECT 1;'; done
    printf '%s\n' '\endpipeline'
} >"$T/pipe.sql"
pg_lat() { # url script clients seconds → "median_ms failed" (the median, not pgbench's
    # mean: on a shared machine one stall of a neighbour moves the mean)
    local out
    rm -f "$T"/pglog*
    out=$(cd "$T" && pgbench -n -M prepared -c "$3" -j "$(($3 > 1 ? 2 : 1))" -T "$4" -l --log-prefix=pglog -f "$2" "$1" 2>&1) || true
    echo "$(cat "$T"/pglog* 2>/dev/null | awk '{print $3}' | sort -n | awk '{v[NR] = $1} END {if (NR) printf "%.3f", v[int((NR + 1) / 2)] / 1000}') \
$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out" | head -1)"
}
read -r PG_DIRECT _ <<<"$(pg_lat "$PG_URL" "$T/one.sql" 1 2)"
read -r PG_RELAY _ <<<"$(pg_lat "$PG_RURL" "$T/one.sql" 1 2)"
read -r PG_PIPE _ <<<"$(pg_lat "$PG_RURL" "$T/pipe.sql" 1 1)"
read -r PG_MANY PG_MANY_FAILED <<<"$(pg_lat "$PG_RURL" "$T/one.sql" 16 1)"

rd_lat() { # port pipeline requests → p50 ms of redis-benchmark
    redis-benchmark -h 127.0.0.1 -p "$1" -t ping_mbulk -c 1 -P "$2" -n "$3" --csv 2>/dev/null |
        awk -F'","' 'NR == 2 {print $5}'
}
RD_DIRECT=$(rd_lat "$RD_PORT" 1 3000)
RD_RELAY=$(rd_lat "$RD_RPORT" 1 1000)
RD_PIPE=$(rd_lat "$RD_RPORT" 16 16000)

# a relay to a port where nothing listens (picked free, not bound)
DEAD_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LIST_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$RELAY" --listen "127.0.0.1:$LIST_PORT" --to "127.0.0.1:$DEAD_PORT" --delay-us "$DELAY_US" 2>/dev/null &
DEAD_PID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$LIST_PORT") 2>/dev/null && break; sleep 0.02; done

python3 - "$RD_RPORT" "$LIST_PORT" "$DELAY_US" "$PG_DIRECT" "$PG_RELAY" "$PG_PIPE" "$PG_MANY" "${PG_MANY_FAILED:-}" \
    "$RD_DIRECT" "$RD_RELAY" "$RD_PIPE" <<'PY'
import json, os, socket, sys, time
rport, dead_port, delay_us = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
num = lambda v: float(v) if v not in ("", None) else None
pg_direct, pg_relay, pg_pipe, pg_many = (num(v) for v in sys.argv[4:8])
pg_many_failed = int(sys.argv[8]) if sys.argv[8] else None
rd_direct, rd_relay, rd_pipe = (num(v) for v in sys.argv[9:12])
out = {"delay_us": delay_us, "ideal_added_ms": 2 * delay_us / 1000}

def cmd(*a):
    return b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x), x) for x in a)

data = os.urandom(1 << 20)
try:
    s = socket.create_connection(("127.0.0.1", rport), timeout=10)
    t0 = time.monotonic()
    s.sendall(cmd(b"SET", b"relay-check", data) + cmd(b"GET", b"relay-check") + cmd(b"DEL", b"relay-check"))
    s.shutdown(socket.SHUT_WR)  # Redis closes the connection only once it sees this
    buf = b""
    try:
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            buf += b
        out["half_close_passed_both_ways"] = True
    except socket.timeout:
        out["half_close_passed_both_ways"] = False
    s.close()
    out["bytes_in_order_1mib"] = buf == b"+OK\r\n$%d\r\n" % len(data) + data + b"\r\n:1\r\n"
    out["round_trip_1mib_ms"] = round((time.monotonic() - t0) * 1e3, 1)
except OSError as e:
    out["half_close_passed_both_ways"] = out["bytes_in_order_1mib"] = False
    out["round_trip_1mib_error"] = str(e)

# the relay may reset the client while its own connect is still being accepted
# (a refused loopback connect fails at once): a reset at any point is the answer
try:
    s = socket.create_connection(("127.0.0.1", dead_port), timeout=5)
    try:
        s.sendall(b"PING\r\n")
        out["upstream_refused_ends_client"] = s.recv(10) == b""
    finally:
        s.close()
except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
    out["upstream_refused_ends_client"] = True
except socket.timeout:
    out["upstream_refused_ends_client"] = False

d = 2 * delay_us / 1000
why = []
def added(name, direct, relayed):
    out[name] = {"direct_ms": direct, "relayed_ms": relayed}
    if direct is None or relayed is None:
        why.append("%s: no figure" % name)
        return
    a = round(relayed - direct, 3)
    out[name]["added_ms"] = a
    # never less than the delay (minus measurement noise), and not much more
    if not 0.9 * d <= a <= d + max(0.5, d / 2):
        why.append("%s: added %.3f ms, ideal %.3f" % (name, a, d))
added("pg_select1", pg_direct, pg_relay)
added("redis_ping_p50", rd_direct, rd_relay)
out["pg_pipeline_10_ms"] = pg_pipe
if pg_pipe is None or pg_relay is None or pg_pipe > 1.5 * pg_relay + 0.2:
    why.append("pgbench pipeline of 10: %s ms against %s ms for one statement" % (pg_pipe, pg_relay))
out["redis_pipeline_16_p50_ms"] = rd_pipe
if rd_pipe is None or rd_relay is None or rd_pipe > 1.5 * rd_relay + 0.2:
    why.append("redis pipeline of 16: %s ms against %s ms for one" % (rd_pipe, rd_relay))
out["pg_16_clients"] = {"latency_ms": pg_many, "failed": pg_many_failed}
if pg_many is None or pg_many_failed != 0:
    why.append("pgbench with 16 clients failed (%s)" % pg_many_failed)
for k in ("half_close_passed_both_ways", "bytes_in_order_1mib", "upstream_refused_ends_client"):
    if not out[k]:
        why.append(k + ": no")
out["ok"] = not why
out["why"] = why
print(json.dumps(out))
PY
