#!/usr/bin/env bash
# bench/run.sh — the benchmark suite behind `make bench` (docs/BENCHMARKS.md).
#
#   bench/run.sh [BUILD_DIR]      (default: $BUILD or build)
#
# Starts, on loopback: nginx (static baseline, `return 200` bodies of the same byte
# count as the boxoffice answer compared), boxoffice embedded (SQLite + in-process
# queue, --threads 2) and boxoffice scale-out (PostgreSQL + Redis, two instances,
# straight or through bench/relay.c, which delays every chunk each way as a network
# would); seeds users in bulk with bench/seed.c (one argon2id hash for all, access
# tokens signed with the server's secret); runs S1..S5 with wrk (+ Lua) and
# bench/loadgen.c, the scale-out scenarios with and without the relay, PostgreSQL
# alone (pgbench) and a frozen PostgreSQL under two instances; stops everything;
# writes bench/results.json, docs/bench-s1.png, docs/bench-s4.png and the results
# table of docs/BENCHMARKS.md (between the bench:begin/end markers), and prints every
# scenario with its figure, its bar and PASS or FAIL.
#
# Knobs (environment):
#   BENCH_DUR        wrk seconds of embedded S1-S3 and of scale-out S3 (6)
#   SO_DUR           wrk seconds of each scale-out S1/S2 run and of its nginx run (4)
#   S4_ACTIVE_MAX    --active-max of every S4 crowd (5000)
#   S4_MAX_TIME      cap of the embedded S4 crowd, seconds (60)
#   S4_SO_MAX_TIME   cap of the scale-out S4 crowds, straight and relayed, seconds (20)
#   SO_THREADS       event loops per scale-out instance (nproc: the server's default, one
#                    per core; on 2 cores, 4 per instance sold 778 paid/s in S4 and 2 sold 1,215)
#   RELAY_DELAY_US   one-way delay of the relays to PostgreSQL and Redis (500)
#   RELAY_RT         1: the relays run SCHED_FIFO (chrt), as a network does not wait
#                    for a CPU; 0: ordinary priority (1)
#   FROZEN_S         seconds PostgreSQL stays frozen (8); FROZEN_PROBES probes in that
#                    time (640); FROZEN_BOOK_RATE bookings tried per second (40)
#   FROZEN_BOUND_MS  longest a booking call may take to answer while frozen (6500:
#                    store_pg's REPLY_WAIT_MS, 6 s, and 0.5 s for the machine)
#   FROZEN_RECOVER_S a booking must succeed again within this after the thaw (5)
#   BENCH_ONLY       comma-separated parts to run (default: all): s1 s2 s3 s4 sweep s5
#                    (embedded), so-s1 so-s2 so-s3 so-s4 relay pgalone frozen
#                    (scale-out). A partial run prints its table and leaves
#                    bench/results.json and docs/ alone (its report goes to the work
#                    directory, which keeps raw/ and report/ only).
#   BENCH_KEEP=1     keeps the whole work directory.
# Exit status 0 when it ran to the end (bars that FAIL are reported, not fatal);
# non-zero when the run itself broke.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${BUILD:-build}}
[[ $BUILD = /* ]] || BUILD=$ROOT/$BUILD
BIN=$BUILD/boxoffice
CORE=$BUILD/libboxoffice_core.a
DUR=${BENCH_DUR:-6}
SO_DUR=${SO_DUR:-4}
S4_ACTIVE_MAX=${S4_ACTIVE_MAX:-5000}
S4_MAX_TIME=${S4_MAX_TIME:-60}
S4_SO_MAX_TIME=${S4_SO_MAX_TIME:-20}
SO_THREADS=${SO_THREADS:-$(nproc)}
RELAY_DELAY_US=${RELAY_DELAY_US:-500}
RELAY_RT=${RELAY_RT:-1}
FROZEN_S=${FROZEN_S:-8}
FROZEN_PROBES=${FROZEN_PROBES:-640}
FROZEN_BOOK_RATE=${FROZEN_BOOK_RATE:-40}
FROZEN_BOUND_MS=${FROZEN_BOUND_MS:-6500}
FROZEN_RECOVER_S=${FROZEN_RECOVER_S:-5}
ONLY=${BENCH_ONLY:-}
HARNESS=$ROOT/tests/harness

ALL_PARTS="s1 s2 s3 s4 sweep s5 so-s1 so-s2 so-s3 so-s4 relay pgalone frozen"
for p in ${ONLY//,/ }; do
    [[ " $ALL_PARTS " == *" $p "* ]] || { echo "bench: BENCH_ONLY: unknown part $p (parts: $ALL_PARTS)" >&2; exit 2; }
done
part() { [[ -z $ONLY || ",$ONLY," == *",$1,"* ]]; } # is this part run?
any_part() {
    local p
    for p; do part "$p" && return 0; done
    return 1
}

for tool in wrk nginx sqlite3 psql python3 cc pkg-config curl gnuplot; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/deps.sh test)" >&2; exit 1; }
done
if any_part relay; then
    for tool in pgbench redis-benchmark; do
        command -v "$tool" >/dev/null || { echo "bench: $tool is missing (scripts/deps.sh test)" >&2; exit 1; }
    done
fi
[[ -x $BIN && -f $CORE ]] || { echo "bench: no $BIN or $CORE: build first (make build)" >&2; exit 1; }
NGINX=$(command -v nginx)

WORK=$(mktemp -d /tmp/boxoffice-bench.XXXXXX)
chmod 755 "$WORK"
RAW=$WORK/raw
mkdir -p "$RAW"
T_START=$(date +%s)
PIDS=()

log() { printf '[bench %4ds] %s\n' $(($(date +%s) - T_START)) "$*"; }

stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    # a frozen PostgreSQL first: the instances' shutdown may wait on it
    [[ -d $WORK/pg ]] && "$HARNESS/pg.sh" thaw "$WORK/pg" >/dev/null 2>&1 || true
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    [[ -d $WORK/redis ]] && "$HARNESS/redis.sh" stop "$WORK/redis" >/dev/null 2>&1 || true
    [[ -d $WORK/pg ]] && "$HARNESS/pg.sh" stop "$WORK/pg" >/dev/null 2>&1 || true
    if [[ ${BENCH_KEEP:-0} = 1 ]]; then
        echo "bench: work directory kept: $WORK"
    elif [[ -n $ONLY ]]; then # a partial run keeps its raw figures and report only
        find "$WORK" -mindepth 1 -maxdepth 1 ! -name raw ! -name report -exec rm -rf {} +
        echo "bench: raw figures and report kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT # the EXIT trap does not run on a signal by itself
trap 'exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
TAKEN_PORTS=" "
pick_port() { # PICKED = a free port not handed out before in this run (no subshell: it must remember)
    local p
    while :; do
        p=$((15000 + RANDOM % 17000))
        [[ $TAKEN_PORTS == *" $p "* ]] && continue
        port_free "$p" && { TAKEN_PORTS+="$p "; PICKED=$p; return; }
    done
}

wait_http() { # url
    local i
    for i in $(seq 1 200); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.05
    done
    echo "bench: $1 did not answer" >&2
    return 1
}

# start_bx NAME PORT DB [flags...]: a boxoffice serve in the background; sets BX_PID.
start_bx() {
    local name=$1 port=$2 db=$3
    shift 3
    local pin=() # BX_CPUS=list: the server runs on those CPUs only
    [[ -n ${BX_CPUS:-} ]] && pin=(taskset -c "$BX_CPUS")
    "${pin[@]}" "$BIN" serve --listen "127.0.0.1:$port" --db "$db" --web-root "$ROOT/web" "$@" \
        >"$WORK/$name.log" 2>&1 &
    BX_PID=$!
    PIDS+=("$BX_PID")
    wait_http "http://127.0.0.1:$port/readyz"
}

stop_bx() { # pid...
    local p
    for p; do stop_pid "$p"; done
    forget_pid "$@"
}

# forget_pid PID...: off the cleanup list, without a signal: for processes already
# waited for, whose pids the system may have handed to somebody else since.
forget_pid() {
    local keep=() p q gone
    for q in "${PIDS[@]}"; do
        gone=0
        for p; do [[ $q = "$p" ]] && gone=1; done
        ((gone)) || keep+=("$q")
    done
    PIDS=("${keep[@]}")
}

# A fresh copy of the seeded embedded database.
fresh_db() { # name → prints sqlite:PATH
    cp "$WORK/template.db" "$WORK/$1.db"
    echo "sqlite:$WORK/$1.db"
}

wrk_run() { # out-name wrk-args...
    local name=$1
    shift
    wrk "$@" >"$RAW/$name.wrk" 2>&1 || { cat "$RAW/$name.wrk" >&2; return 1; }
    grep -E 'Requests/sec|99%|Non-2xx' "$RAW/$name.wrk" | sed "s/^/    $name: /"
}

# wrk_pair NAME PATH HDRS PORT1 PORT2: one wrk (-t1 -c32, hdrs.lua) per scale-out
# instance at the same time, SO_DUR seconds; NAME-1.wrk and NAME-2.wrk, summed by
# report.py (together the same 2 threads and 64 connections as one wrk on nginx).
wrk_pair() {
    local name=$1 path=$2 hdrs=$3 w1 w2 rc=0
    BENCH_HDRS=$hdrs BENCH_OFFSET=0 wrk -t1 -c32 -d"${SO_DUR}s" --latency -s "$ROOT/bench/hdrs.lua" \
        "http://127.0.0.1:$4$path" >"$RAW/$name-1.wrk" 2>&1 &
    w1=$!
    BENCH_HDRS=$hdrs BENCH_OFFSET=500 wrk -t1 -c32 -d"${SO_DUR}s" --latency -s "$ROOT/bench/hdrs.lua" \
        "http://127.0.0.1:$5$path" >"$RAW/$name-2.wrk" 2>&1 &
    w2=$!
    wait "$w1" || rc=1
    wait "$w2" || rc=1
    ((rc == 0)) || { cat "$RAW/$name-1.wrk" "$RAW/$name-2.wrk" >&2; return 1; }
    echo "    $name: $(awk '/Requests\/sec/ {s += $2; n++} END {printf "%.0f req/s over %d instances", s, n}' \
        "$RAW/$name-1.wrk" "$RAW/$name-2.wrk")$(cat "$RAW/$name-1.wrk" "$RAW/$name-2.wrk" |
        awk '/Non-2xx/ {s += $NF} END {if (s) printf ", %d non-2xx", s}')"
}

hdr_curl() { # hdrs-line url → body
    local line=$1 url=$2 a q
    a=$(cut -f3 <<<"$line")
    q=$(cut -f4 <<<"$line")
    curl -fs -H "$a" -H "$q" "$url"
}

# start_nginx DIR PORT S1_BYTES S2_BYTES S3_BYTES: the static baseline, bodies of
# those sizes (bench/nginx.conf).
body() { head -c "$1" /dev/zero | tr '\0' x; }
start_nginx() {
    mkdir -p "$1"
    sed -e "s|@DIR@|$1|g" -e "s|@PORT@|$2|" -e "s|@S1_BODY@|$(body "$3")|" \
        -e "s|@S2_BODY@|$(body "$4")|" -e "s|@S3_BODY@|$(body "$5")|" \
        "$ROOT/bench/nginx.conf" >"$1/nginx.conf"
    "$NGINX" -c "$1/nginx.conf" -p "$1" >"$1/stdout.log" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    wait_http "http://127.0.0.1:$2/s1"
    [[ $(curl -fs "http://127.0.0.1:$2/s2" | wc -c) -eq $4 ]] || { echo "bench: nginx body size mismatch" >&2; exit 1; }
}

LG=$WORK/loadgen
SEED=$WORK/seed
RELAY=$WORK/relay

# ---------------------------------------------------------------- machine and tools
log "work directory $WORK, build $BUILD${ONLY:+, parts: $ONLY}"
cc -O2 -g -Wall -Wextra -Wshadow -Wno-unused-parameter -o "$LG" "$ROOT/bench/loadgen.c" -lm
cc -O2 -g -Wall -Wextra -Wshadow -Wno-unused-parameter -o "$RELAY" "$ROOT/bench/relay.c"
# shellcheck disable=SC2046
cc -O2 -g -Wall -Wextra -Wshadow -Wno-unused-parameter -I"$ROOT/src" -o "$SEED" "$ROOT/bench/seed.c" "$CORE" \
    $(pkg-config --cflags --libs sqlite3 libpq hiredis libsodium) -lpthread -lm
python3 - "$WORK" >"$RAW/fsync.json" <<'EOF'
import os, sys, time
p = os.path.join(sys.argv[1], "fsync.probe")
fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
ts = []
for i in range(200):
    os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
    t = time.perf_counter(); os.fdatasync(fd); ts.append(time.perf_counter() - t)
os.close(fd); os.unlink(p)
ts.sort()
print('{"fdatasync_p50_ms": %.3f, "fdatasync_p99_ms": %.3f}' % (ts[100] * 1e3, ts[197] * 1e3))
EOF
log "disk: $(cat "$RAW/fsync.json")"
{
    echo "nproc=$(nproc)"
    echo "model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel=$(uname -r)"
    echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "mem_gib=$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)"
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nginx=$($NGINX -v 2>&1 | sed 's/.*nginx\///')"
    echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    echo "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo +dirty)"
    echo "build=$(grep -m1 -o "buildtype=[a-z]*" "$BUILD/meson-logs/meson-log.txt" 2>/dev/null || echo unknown)"
    echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "dur=$DUR"
    echo "s4_active_max=$S4_ACTIVE_MAX"
    echo "so_threads=$SO_THREADS"
    echo "so_dur=$SO_DUR"
    echo "s4_so_max_time=$S4_SO_MAX_TIME"
    echo "relay_delay_us=$RELAY_DELAY_US"
    echo "frozen_s=$FROZEN_S"
    echo "frozen_probes=$FROZEN_PROBES"
    echo "frozen_book_rate=$FROZEN_BOOK_RATE"
    echo "frozen_bound_ms=$FROZEN_BOUND_MS"
    echo "frozen_recover_s=$FROZEN_RECOVER_S"
    echo "bench_only=$ONLY"
} >"$RAW/machine.txt"

if any_part s1 s2 s3 s4 sweep s5; then
    # ---------------------------------------------------------------- seeding (embedded)
    # Users bench-0000001.. (ids 1..1,000,000); the first 100,000 get 1,000,000 won.
    # Concerts: 1 = S1/S2 (1 x 50 seats), 2 = S3, 3 = S4 (20 x 1,000 seats at 50,000),
    # 4 = S5. Token file line k (0-based) = user k+1.
    log "seeding 1,000,000 users (embedded template)"
    "$SEED" --db "sqlite:$WORK/template.db" --users 1000000 --charge-first 100000 --amount 1000000 \
        --tokens "$WORK/tokens.txt" --concert "S1S2:1:50:50000" --concert "S3:1:50:50000" \
        --concert "S4:20:1000:50000" --concert "S5:1:50:50000" >"$RAW/seed-embedded.json"
    log "seeded: $(cat "$RAW/seed-embedded.json")"
fi

# ---------------------------------------------------------------- S1-S3 embedded
if any_part s1 s2 s3; then
    pick_port; PORT_A=$PICKED
    DB_A=$(fresh_db s123)
    start_bx s123 "$PORT_A" "$DB_A" --threads 2 --log-level warn --active-max 100
    A=http://127.0.0.1:$PORT_A
    PID_A=$BX_PID
    # 1,100 users take a token on concert 1: the first 100 are ACTIVE (S2), 1,000 WAITING (S1).
    "$LG" issue --target "127.0.0.1:$PORT_A" --conns 16 --tokens "$WORK/tokens.txt" --skip 100000 --users 1100 \
        --concert 1 --probe-n 0 --save "$WORK/s12.hdrs" >/dev/null 2>&1
    sort -n "$WORK/s12.hdrs" | awk -F'\t' '$2 == "WAITING"' >"$WORK/s1.hdrs"
    sort -n "$WORK/s12.hdrs" | awk -F'\t' '$2 == "ACTIVE"' >"$WORK/s2.hdrs"
    [[ $(wc -l <"$WORK/s1.hdrs") -eq 1000 && $(wc -l <"$WORK/s2.hdrs") -eq 100 ]] || {
        echo "bench: unexpected token set-up" >&2
        exit 1
    }
    S1_BYTES=$(hdr_curl "$(head -1 "$WORK/s1.hdrs")" "$A/api/v1/queue/status" | wc -c)
    S2_BYTES=$(hdr_curl "$(head -1 "$WORK/s2.hdrs")" "$A/api/v1/schedules/1/seats" | wc -c)
    S3_BYTES=$(curl -fs -X POST -H "Authorization: Bearer $(sed -n 1p "$WORK/tokens.txt" | cut -d' ' -f2)" \
        "$A/api/v1/concerts/1/queue/tokens" | wc -c) # user 1 on concert 1: a fresh WAITING ticket
    echo "s1_bytes=$S1_BYTES" >>"$RAW/machine.txt"
    echo "s2_bytes=$S2_BYTES" >>"$RAW/machine.txt"
    echo "s3_bytes=$S3_BYTES" >>"$RAW/machine.txt"

    # nginx baseline with bodies of those sizes
    pick_port; PORT_N=$PICKED
    start_nginx "$WORK/nginx" "$PORT_N" "$S1_BYTES" "$S2_BYTES" "$S3_BYTES"
    N=http://127.0.0.1:$PORT_N

    if part s1; then
        log "S1 queue status poll (WAITING tokens, ${S1_BYTES}-byte answer)"
        # Three pairs, boxoffice then nginx, one after the other: the bar takes the pair with the
        # median ratio (one sample of either is at the mercy of a neighbour's burst).
        for i in 1 2 3; do
            BENCH_HDRS=$WORK/s1.hdrs wrk_run "s1-bx.$i" -t2 -c64 -d"${DUR}s" --latency -s "$ROOT/bench/hdrs.lua" \
                "$A/api/v1/queue/status"
            wrk_run "s1-nginx.$i" -t2 -c64 -d"${DUR}s" --latency "$N/s1"
        done
        PEAK=$(awk '/Requests\/sec/ {printf "%d\n", $2}' "$RAW"/s1-bx.[123].wrk | sort -n | sed -n 2p)
        log "S1 paced at half of peak ($((PEAK / 2)) req/s) and the offered-load sweep"
        # three 5-s runs a second apart; the bar takes the median p99 (one run alone is at
        # the mercy of a neighbour's burst on this shared machine)
        sleep 1
        : >"$RAW/s1-half.jsonl"
        for i in 1 2 3; do
            "$LG" rate --target "127.0.0.1:$PORT_A" --conns 64 --rate $((PEAK / 2)) --duration 5 --warmup 1 \
                --path /api/v1/queue/status --hdrs "$WORK/s1.hdrs" >>"$RAW/s1-half.jsonl"
            sleep 1
        done
        sed 's/^/    s1-half: /' "$RAW/s1-half.jsonl" | cut -c1-220
        # control: nginx paced at the same rate by the same load generator
        "$LG" rate --target "127.0.0.1:$PORT_N" --conns 64 --rate $((PEAK / 2)) --duration 5 --warmup 1 \
            --path /s1 >"$RAW/s1-half-nginx.json"
        echo "    s1-half-nginx: $(cut -c1-200 "$RAW/s1-half-nginx.json")"
        : >"$RAW/s1-sweep.jsonl"
        for f in 0.1 0.25 0.5 0.75 0.9 1.0 1.2; do
            r=$(awk -v p="$PEAK" -v f="$f" 'BEGIN {printf "%d", p * f}')
            "$LG" rate --target "127.0.0.1:$PORT_A" --conns 64 --rate "$r" --duration 3 --warmup 0.5 \
                --path /api/v1/queue/status --hdrs "$WORK/s1.hdrs" >>"$RAW/s1-sweep.jsonl"
        done
    fi

    if part s2; then
        log "S2 seat map, 50 seats, ACTIVE tokens (${S2_BYTES}-byte answer)"
        for i in 1 2 3; do
            BENCH_HDRS=$WORK/s2.hdrs wrk_run "s2-bx.$i" -t2 -c64 -d"${DUR}s" --latency -s "$ROOT/bench/hdrs.lua" \
                "$A/api/v1/schedules/1/seats"
            wrk_run "s2-nginx.$i" -t2 -c64 -d"${DUR}s" --latency "$N/s2"
        done
    fi

    if part s3; then
        log "S3 token issuance, distinct users, embedded"
        BENCH_TOKENS=$WORK/tokens.txt BENCH_SKIP=200000 BENCH_COUNT=800000 BENCH_CONCERT=2 BENCH_NTHREADS=2 \
            wrk_run s3-bx -t2 -c64 -d"${DUR}s" --latency -s "$ROOT/bench/issue.lua" "$A/"
        wrk_run s3-nginx -t2 -c64 -d"${DUR}s" --latency "$N/s3"
    fi

    if part s1; then
        log "S1 again with --log-level info (the cost of one JSON log line per request)"
        stop_bx "$PID_A"
        start_bx s123-info "$PORT_A" "$DB_A" --threads 2 --log-level info --active-max 100
        PID_A=$BX_PID
        BENCH_HDRS=$WORK/s1.hdrs wrk_run s1-bx-info -t2 -c64 -d"${DUR}s" --latency -s "$ROOT/bench/hdrs.lua" "$A/api/v1/queue/status"
    fi
    stop_bx "$PID_A"
fi

# ---------------------------------------------------------------- S4 embedded
s4_verify_sqlite() { # db-path out-name
    local db=$1 out=$2 audit_rc=0
    "$BIN" audit --db "sqlite:$db" --max-seats-per-user 4 >"$RAW/$out-audit.txt" 2>&1 || audit_rc=$?
    sqlite3 "$db" "SELECT
        (SELECT count(*) FROM seats s JOIN schedules c ON c.id = s.schedule_id WHERE c.concert_id = 3 AND s.status = 'SOLD'),
        (SELECT count(*) FROM reservations r JOIN schedules c ON c.id = r.schedule_id WHERE c.concert_id = 3 AND r.status = 'CONFIRMED'),
        (SELECT count(DISTINCT r.schedule_id || ':' || r.seat_no) FROM reservations r JOIN schedules c ON c.id = r.schedule_id WHERE c.concert_id = 3 AND r.status = 'CONFIRMED'),
        (SELECT count(*) FROM payments),
        (SELECT count(*) FROM seats s JOIN reservations r ON r.id = s.reservation_id WHERE s.status = 'SOLD' AND r.status <> 'CONFIRMED')" |
        awk -F'|' -v rc="$audit_rc" '{printf "{\"sold\":%d,\"confirmed\":%d,\"distinct_seats\":%d,\"payments\":%d,\"sold_not_confirmed\":%d,\"audit_rc\":%d}\n", $1, $2, $3, $4, $5, rc}' \
            >"$RAW/$out-verify.json"
}

s4_summary() { # out-name → one line: paid, sustained rate, sell-out, and the verification
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("paid", d["paid"], "sustained/s", d["paid_per_s_sustained"], "sellout_s", d["sellout_s"], end="")' "$RAW/$1.json"
    echo "; verify $(cat "$RAW/$1-verify.json")"
}

if part s4; then
    log "S4 flash crowd, embedded: 100,000 users in 10 s, 20 x 1,000 seats, --active-max $S4_ACTIVE_MAX"
    pick_port; PORT_B=$PICKED
    DB_B=$(fresh_db s4)
    start_bx s4 "$PORT_B" "$DB_B" --threads 2 --log-level warn --active-max "$S4_ACTIVE_MAX"
    "$LG" flow --target "127.0.0.1:$PORT_B" --conns 1000 --tokens "$WORK/tokens.txt" --users 100000 --arrival 10 \
        --concert 3 --seats-total 20000 --max-time "$S4_MAX_TIME" --timeline "$RAW/s4-timeline.txt" \
        --cpu-pids "$BX_PID" >"$RAW/s4-bx.json" 2>"$RAW/s4-bx.progress"
    stop_bx "$BX_PID"
    s4_verify_sqlite "$WORK/s4.db" s4-bx
    log "S4 embedded: $(s4_summary s4-bx)"

    # The same crowd with the server on one core and the generator on another: what one
    # server core sells while the crowd arrives (on this machine the generator otherwise
    # takes a third of the two cores).
    if [[ $(nproc) -ge 2 ]]; then
        log "S4 embedded on one server core (server pinned to CPU 0, the load generator to CPU 1)"
        DB_P=$(fresh_db s4p)
        BX_CPUS=0 start_bx s4p "$PORT_B" "$DB_P" --threads 1 --log-level warn --active-max "$S4_ACTIVE_MAX"
        taskset -c 1 "$LG" flow --target "127.0.0.1:$PORT_B" --conns 1000 --tokens "$WORK/tokens.txt" --users 100000 \
            --arrival 10 --concert 3 --seats-total 20000 --max-time "$S4_MAX_TIME" >"$RAW/s4-core.json" 2>/dev/null
        stop_bx "$BX_PID"
        s4_verify_sqlite "$WORK/s4p.db" s4-core
        rm -f "$WORK/s4p.db"*
        log "S4 embedded, one server core: $(s4_summary s4-core)"
    fi
    rm -f "$WORK/s4.db"*
fi

if part sweep; then
    log "S4 offered-load sweep (embedded, users arriving per second for 5 s, fresh database each)"
    : >"$RAW/s4-sweep.jsonl"
    [[ -n ${PORT_B:-} ]] || { pick_port; PORT_B=$PICKED; }
    for rate in 100 200 400 800 1600 3200 6400 12800; do
        DB_W=$(fresh_db s4w)
        start_bx s4w "$PORT_B" "$DB_W" --threads 2 --log-level warn --active-max "$S4_ACTIVE_MAX"
        "$LG" flow --target "127.0.0.1:$PORT_B" --conns 1000 --tokens "$WORK/tokens.txt" --users $((rate * 5)) --arrival 5 \
            --concert 3 --seats-total 20000 --max-time 12 2>/dev/null |
            sed "s/^{/{\"offered_users_per_s\":$rate,/" >>"$RAW/s4-sweep.jsonl"
        stop_bx "$BX_PID"
        rm -f "$WORK/s4w.db"*
    done
fi

# ---------------------------------------------------------------- S5 embedded
if part s5; then
    log "S5 one million waiting users in one queue (embedded)"
    pick_port; PORT_C=$PICKED
    DB_C=$(fresh_db s5)
    start_bx s5 "$PORT_C" "$DB_C" --threads 2 --log-level warn
    "$LG" issue --target "127.0.0.1:$PORT_C" --conns 64 --tokens "$WORK/tokens.txt" --users 1000000 --concert 4 \
        --pid "$BX_PID" --checkpoints 1000,10000,100000,1000000 --probe-n 2000 >"$RAW/s5.json" 2>"$RAW/s5.progress"
    cat "$RAW/s5.progress"
    stop_bx "$BX_PID"
    rm -f "$WORK/s5.db"*
fi

# ---------------------------------------------------------------- scale-out
# so_verify CONCERT OUT: the scale-out counterpart of s4_verify_sqlite (after the
# instances stopped): audit, and SQL counts of that concert's sale.
so_verify() {
    local concert=$1 out=$2 audit_rc=0
    "$BIN" audit --db "$PG_URL" --max-seats-per-user 4 >"$RAW/$out-audit.txt" 2>&1 || audit_rc=$?
    psql -X -A -t -F'|' "$PG_URL" -c "SELECT
        (SELECT count(*) FROM seats s JOIN schedules c ON c.id = s.schedule_id WHERE c.concert_id = $concert AND s.status = 'SOLD'),
        (SELECT count(*) FROM reservations r JOIN schedules c ON c.id = r.schedule_id WHERE c.concert_id = $concert AND r.status = 'CONFIRMED'),
        (SELECT count(DISTINCT (r.schedule_id, r.seat_no)) FROM reservations r JOIN schedules c ON c.id = r.schedule_id WHERE c.concert_id = $concert AND r.status = 'CONFIRMED'),
        (SELECT count(*) FROM payments p JOIN reservations r ON r.id = p.reservation_id JOIN schedules c ON c.id = r.schedule_id WHERE c.concert_id = $concert),
        (SELECT count(*) FROM seats s JOIN reservations r ON r.id = s.reservation_id WHERE s.status = 'SOLD' AND r.status <> 'CONFIRMED')" |
        awk -F'|' -v rc="$audit_rc" '{printf "{\"sold\":%d,\"confirmed\":%d,\"distinct_seats\":%d,\"payments\":%d,\"sold_not_confirmed\":%d,\"audit_rc\":%d}\n", $1, $2, $3, $4, $5, rc}' \
            >"$RAW/$out-verify.json"
}

# start_relay NAME TO_PORT → RELAY_PORT: bench/relay.c in front of 127.0.0.1:TO_PORT,
# SCHED_FIFO when RELAY_RT=1 and allowed (a network's delay does not grow when the
# CPUs are busy; an ordinary process's wake-ups would come late on two full cores).
start_relay() {
    local name=$1 to=$2 rt=() i
    pick_port; RELAY_PORT=$PICKED
    [[ $RELAY_RT = 1 ]] && chrt -f 20 true 2>/dev/null && rt=(chrt -f 20)
    "${rt[@]}" "$RELAY" --listen "127.0.0.1:$RELAY_PORT" --to "127.0.0.1:$to" --delay-us "$RELAY_DELAY_US" \
        2>"$RAW/relay-$name.log" &
    RELAY_PID=$!
    PIDS+=("$RELAY_PID")
    for i in $(seq 1 100); do port_free "$RELAY_PORT" || return 0; sleep 0.02; done
    echo "bench: relay $name did not listen" >&2
    return 1
}

# so_pair NAME DB QUEUE FLAGS...: two instances (NAME1, NAME2) on fresh ports; sets
# SO_P1 SO_P2 (ports) and SO_PID1 SO_PID2.
so_pair() {
    local name=$1 db=$2 queue=$3
    shift 3
    pick_port; SO_P1=$PICKED
    pick_port; SO_P2=$PICKED
    start_bx "${name}1" "$SO_P1" "$db" --queue "$queue" --log-level warn "$@"
    SO_PID1=$BX_PID
    start_bx "${name}2" "$SO_P2" "$db" --queue "$queue" --log-level warn "$@"
    SO_PID2=$BX_PID
}

if any_part so-s1 so-s2 so-s3 so-s4 relay pgalone frozen; then
    log "scale-out: PostgreSQL + Redis, two instances (--threads $SO_THREADS each)"
    PG_URL=$("$HARNESS/pg.sh" start "$WORK/pg")
    REDIS_URL=$("$HARNESS/redis.sh" start "$WORK/redis")
    PG_PORT=$(sed -E 's|.*:([0-9]+)/.*|\1|' <<<"$PG_URL")
    REDIS_PORT=$(sed -E 's|.*:([0-9]+)/.*|\1|' <<<"$REDIS_URL")
    PG_PM=$(head -1 "$WORK/pg/pgdata/postmaster.pid")
    REDIS_PID=$(cat "$WORK/redis/redis.pid")
    # Seeding only: commits without waiting for the WAL flush (PGOPTIONS reaches this
    # connection alone; the servers run with synchronous_commit=on).
    # Seeders side by side (each is round-trip bound; four go 1.6x faster than one
    # here): the charged users in two halves, the first also making every concert, and
    # (for S3 only) 400,000 users who issue tokens, in four quarters. Line order of
    # pg-tokens.txt: the charged users first. Concerts, in this order: S3, S4,
    # PGALONE (pgbench), S1S2 (S1/S2, 1 x 50 seats), S4R (S4 through the relay),
    # FROZEN (the frozen probe's bookings, cheap seats), FROZENQ (its WAITING users).
    # (40,000 charged users are enough when no S4 crowd runs: a quicker partial run)
    SO_USERS=100000
    any_part so-s3 so-s4 relay || SO_USERS=40000
    HALF=$((SO_USERS / 2))
    PGOPTIONS="-c synchronous_commit=off" "$SEED" --db "$PG_URL" --users "$HALF" --charge-first "$HALF" --amount 1000000 \
        --tokens "$WORK/pg-tokens.txt" --concert "S3:1:50:50000" --concert "S4:20:1000:50000" \
        --concert "PGALONE:20:1000:50000" --concert "S1S2:1:50:50000" --concert "S4R:20:1000:50000" \
        --concert "FROZEN:20:1000:1000" --concert "FROZENQ:1:10:1000" >"$RAW/seed-pg.json" &
    SEEDERS=("$!")
    PIDS+=("$!")
    for i in $(seq 1 100); do # the first one migrates; the others start once the tables are there
        [[ $(psql -X -A -t "$PG_URL" -c "SELECT to_regclass('public.users') IS NOT NULL" 2>/dev/null) = t ]] && break
        sleep 0.2
    done
    PGOPTIONS="-c synchronous_commit=off" "$SEED" --db "$PG_URL" --users $((SO_USERS - HALF)) --from $((HALF + 1)) \
        --charge-first $((SO_USERS - HALF)) --amount 1000000 --tokens "$WORK/pg-tokens-c2.txt" >/dev/null &
    SEEDERS+=("$!")
    PIDS+=("$!")
    SEED_FILES=("$WORK/pg-tokens-c2.txt")
    if part so-s3; then
        for k in 0 1 2 3; do
            PGOPTIONS="-c synchronous_commit=off" "$SEED" --db "$PG_URL" --users 100000 --from $((100001 + k * 100000)) \
                --tokens "$WORK/pg-tokens-s3-$k.txt" >/dev/null &
            SEEDERS+=("$!")
            PIDS+=("$!")
            SEED_FILES+=("$WORK/pg-tokens-s3-$k.txt")
        done
    fi
    for p in "${SEEDERS[@]}"; do wait "$p"; done
    forget_pid "${SEEDERS[@]}"
    cat "${SEED_FILES[@]}" >>"$WORK/pg-tokens.txt"
    log "seeded PostgreSQL: $(cut -c1-300 "$RAW/seed-pg.json")"
    concert() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["concerts"][int(sys.argv[2])]["concertId"])' "$RAW/seed-pg.json" "$1"; }
    schedules() { python3 -c 'import json,sys; print(",".join(map(str, json.load(open(sys.argv[1]))["concerts"][int(sys.argv[2])]["schedules"])))' "$RAW/seed-pg.json" "$1"; }
    SO_S3=$(concert 0)
    SO_S4=$(concert 1)
    SO_S12=$(concert 3)
    SO_S12_SCHED=$(schedules 3)
    SO_S4R=$(concert 4)
    SO_FZ=$(concert 5)
    SO_FZ_SCHEDS=$(schedules 5)
    SO_FZQ=$(concert 6)

    if part relay; then
        start_relay pg "$PG_PORT"
        PG_RURL=$(sed -E "s/:[0-9]+\//:$RELAY_PORT\//" <<<"$PG_URL")
        RELAY_PG_PORT=$RELAY_PORT RELAY_PG_PID=$RELAY_PID
        start_relay redis "$REDIS_PORT"
        REDIS_RURL=$(sed -E "s/:[0-9]+\//:$RELAY_PORT\//" <<<"$REDIS_URL")
        RELAY_REDIS_PORT=$RELAY_PORT RELAY_REDIS_PID=$RELAY_PID
        log "relays at ${RELAY_DELAY_US} us each way: PostgreSQL via $RELAY_PG_PORT, Redis via $RELAY_REDIS_PORT; checking them"
        "$ROOT/bench/relay-check.sh" "$RELAY" "$PG_URL" "$RELAY_PG_PORT" "$REDIS_URL" "$RELAY_REDIS_PORT" \
            "$RELAY_DELAY_US" >"$RAW/relay-check.json" || rm -f "$RAW/relay-check.json"
        echo "    relay-check: $(cat "$RAW/relay-check.json" 2>/dev/null || echo 'no result')"
    fi

    # ------------------------------------------------------------ S1-S3 scale-out
    # Two instances with --active-max 100, as the embedded S1-S3 server; with the relay,
    # a second pair beside them whose PostgreSQL and Redis are behind the relays (the
    # same waiting room: the same tokens poll through either pair).
    if any_part so-s1 so-s2 so-s3 relay; then
        so_pair soa "$PG_URL" "$REDIS_URL" --threads "$SO_THREADS" --active-max 100
        PA1=$SO_P1 PA2=$SO_P2 PIDA1=$SO_PID1 PIDA2=$SO_PID2
        if part relay; then
            so_pair sob "$PG_RURL" "$REDIS_RURL" --threads "$SO_THREADS" --active-max 100
            PB1=$SO_P1 PB2=$SO_P2 PIDB1=$SO_PID1 PIDB2=$SO_PID2
        fi
        SA=http://127.0.0.1:$PA1
        # 1,100 users (charged ones: lines 1-1,100) take a token on S1S2: the first
        # 100 ACTIVE (S2), 1,000 WAITING (S1).
        "$LG" issue --target "127.0.0.1:$PA1" --conns 16 --tokens "$WORK/pg-tokens.txt" --users 1100 \
            --concert "$SO_S12" --probe-n 0 --save "$WORK/so-s12.hdrs" >/dev/null 2>&1
        sort -n "$WORK/so-s12.hdrs" | awk -F'\t' '$2 == "WAITING"' >"$WORK/so-s1.hdrs"
        sort -n "$WORK/so-s12.hdrs" | awk -F'\t' '$2 == "ACTIVE"' >"$WORK/so-s2.hdrs"
        [[ $(wc -l <"$WORK/so-s1.hdrs") -eq 1000 && $(wc -l <"$WORK/so-s2.hdrs") -eq 100 ]] || {
            echo "bench: unexpected scale-out token set-up" >&2
            exit 1
        }
        SO_S1_BYTES=$(hdr_curl "$(head -1 "$WORK/so-s1.hdrs")" "$SA/api/v1/queue/status" | wc -c)
        SO_S2_BYTES=$(hdr_curl "$(head -1 "$WORK/so-s2.hdrs")" "$SA/api/v1/schedules/$SO_S12_SCHED/seats" | wc -c)
        SO_S3_BYTES=$(curl -fs -X POST -H "Authorization: Bearer $(sed -n 1201p "$WORK/pg-tokens.txt" | cut -d' ' -f2)" \
            "$SA/api/v1/concerts/$SO_S12/queue/tokens" | wc -c) # a user with no token yet: a fresh WAITING ticket
        {
            echo "so_s1_bytes=$SO_S1_BYTES"
            echo "so_s2_bytes=$SO_S2_BYTES"
            echo "so_s3_bytes=$SO_S3_BYTES"
        } >>"$RAW/machine.txt"
        # the same nginx baseline, with the byte counts of the scale-out answers
        pick_port; PORT_NS=$PICKED
        start_nginx "$WORK/nginx-so" "$PORT_NS" "$SO_S1_BYTES" "$SO_S2_BYTES" "$SO_S3_BYTES"
        NGINX_SO_PID=$NGINX_PID
        NS=http://127.0.0.1:$PORT_NS

        if any_part so-s1 relay; then
            log "S1 scale-out: queue status poll over both instances${PB1:+, straight and through the relays}, and nginx (${SO_S1_BYTES}-byte answer)"
            # Three rounds back to back; the bars take the round with the median ratio.
            for i in 1 2 3; do
                wrk_pair "s1-so.$i" /api/v1/queue/status "$WORK/so-s1.hdrs" "$PA1" "$PA2"
                if part relay; then
                    wrk_pair "s1-relay.$i" /api/v1/queue/status "$WORK/so-s1.hdrs" "$PB1" "$PB2"
                fi
                if part so-s1; then
                    wrk_run "s1-so-nginx.$i" -t2 -c64 -d"${SO_DUR}s" --latency "$NS/s1"
                fi
            done
        fi
        if part relay; then
            stop_bx "$PIDB1" "$PIDB2"
        fi

        if part so-s2; then
            log "S2 scale-out: seat map, 50 seats, ACTIVE tokens, over both instances, and nginx (${SO_S2_BYTES}-byte answer)"
            for i in 1 2 3; do
                wrk_pair "s2-so.$i" "/api/v1/schedules/$SO_S12_SCHED/seats" "$WORK/so-s2.hdrs" "$PA1" "$PA2"
                wrk_run "s2-so-nginx.$i" -t2 -c64 -d"${SO_DUR}s" --latency "$NS/s2"
            done
        fi

        if part so-s3; then
            log "S3 token issuance, scale-out (one wrk per instance, distinct users), and nginx"
            BENCH_TOKENS=$WORK/pg-tokens.txt BENCH_SKIP=100000 BENCH_COUNT=200000 BENCH_CONCERT=$SO_S3 BENCH_NTHREADS=1 \
                wrk -t1 -c32 -d"${DUR}s" --latency -s "$ROOT/bench/issue.lua" "http://127.0.0.1:$PA1/" >"$RAW/s3-so1.wrk" 2>&1 &
            W1=$!
            BENCH_TOKENS=$WORK/pg-tokens.txt BENCH_SKIP=300000 BENCH_COUNT=200000 BENCH_CONCERT=$SO_S3 BENCH_NTHREADS=1 \
                wrk -t1 -c32 -d"${DUR}s" --latency -s "$ROOT/bench/issue.lua" "http://127.0.0.1:$PA2/" >"$RAW/s3-so2.wrk" 2>&1 &
            W2=$!
            wait "$W1" "$W2"
            grep -h 'Requests/sec' "$RAW/s3-so1.wrk" "$RAW/s3-so2.wrk" | sed 's/^/    s3-so: /'
            wrk_run s3-so-nginx -t2 -c64 -d"${DUR}s" --latency "$NS/s3"
        fi
        stop_bx "$PIDA1" "$PIDA2" "$NGINX_SO_PID"
    fi

    # ------------------------------------------------------------ S4 scale-out
    # so_crowd NAME CONCERT DB QUEUE [CPU_PIDS...]: the S4 crowd over a fresh pair of
    # instances (--active-max S4_ACTIVE_MAX), capped at S4_SO_MAX_TIME; the CPU of
    # PostgreSQL (postmaster and backends), Redis, both instances and CPU_PIDS over
    # the crowd goes into NAME.json; then the pair stops and the sale is verified.
    so_crowd() {
        local name=$1 concert=$2 db=$3 queue=$4
        shift 4
        # the same starting point for every crowd: no dead rows of the sale before, fresh statistics
        local t0=$SECONDS
        psql -X -q "$PG_URL" -c "VACUUM ANALYZE" >/dev/null
        echo "    (VACUUM ANALYZE before the crowd: $((SECONDS - t0)) s)"
        so_pair "$name" "$db" "$queue" --threads "$SO_THREADS" --active-max "$S4_ACTIVE_MAX"
        local cpu="$SO_PID1,$SO_PID2,$REDIS_PID,$PG_PM" p
        for p; do cpu+=",$p"; done
        "$LG" flow --targets "127.0.0.1:$SO_P1,127.0.0.1:$SO_P2" --conns 500 --tokens "$WORK/pg-tokens.txt" --users 100000 \
            --arrival 10 --concert "$concert" --seats-total 20000 --max-time "$S4_SO_MAX_TIME" --cpu-pids "$cpu" \
            --timeline "$RAW/$name-timeline.txt" >"$RAW/$name.json" 2>"$RAW/$name.progress"
        stop_bx "$SO_PID1" "$SO_PID2"
        so_verify "$concert" "$name"
    }
    if part so-s4; then
        log "S4 flash crowd, scale-out (load spread over both instances by the load generator)"
        so_crowd s4-so "$SO_S4" "$PG_URL" "$REDIS_URL"
        log "S4 scale-out: $(s4_summary s4-so)"
    fi

    # What PostgreSQL alone sells on this machine: pgbench calls the hold and pay
    # functions the instances call (one commit each), for a third concert of 20 x 1,000
    # seats and the charged users, with no HTTP, no queue, no seat maps and no date
    # lists. 8 clients, each on its own 2,500 seats, a random one per attempt.
    PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | tail -1 || true)
    if part pgalone && [[ -x $PGBENCH ]]; then
        log "S4 scale-out ceiling: PostgreSQL alone (pgbench: hold + pay functions, 8 clients, 3 s)"
        PG_FIRST=$(python3 -c 'import json,sys; print(min(json.load(open(sys.argv[1]))["concerts"][2]["schedules"]))' "$RAW/seed-pg.json")
        head -n 20000 "$WORK/pg-tokens.txt" | awk '{print NR - 1 "\t" $1}' >"$WORK/pg-buyers.tsv"
        psql -X -q "$PG_URL" -c "CREATE TABLE bench_buyers(k integer PRIMARY KEY, uid bigint NOT NULL)" \
            -c "\\copy bench_buyers FROM '$WORK/pg-buyers.tsv'"
        cat >"$WORK/pg-pair.sql" <<'SQL'
\set k :client_id * 2500 + random(0, 2499)
SELECT b.uid AS u, coalesce(h.o_id, 0) AS rid FROM bench_buyers b,
  bx_hold(b.uid, :first + :k / 1000, 1 + :k % 1000, :now::bigint, :now::bigint + 300000, 4) h WHERE b.k = :k \gset
SELECT o_code FROM bx_pay(:u, :rid, -1, :now::bigint + 1, NULL, NULL);
SQL
        NOW_MS=$(($(date +%s%N) / 1000000))
        "$PGBENCH" -n -M prepared -c 8 -j 2 -T 3 -D first="$PG_FIRST" -D now="$NOW_MS" -f "$WORK/pg-pair.sql" "$PG_URL" \
            >"$RAW/pg-alone.txt" 2>&1 || true
        PG_PAID=$(psql -X -A -t "$PG_URL" -c "SELECT count(*) FROM reservations r JOIN schedules c ON c.id = r.schedule_id
            WHERE c.concert_id = (SELECT concert_id FROM schedules WHERE id = $PG_FIRST) AND r.status = 'CONFIRMED'")
        if python3 - "$RAW/pg-alone.txt" "$PG_PAID" >"$RAW/pg-alone.json" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
tps = re.search(r"tps = ([\d.]+)", text)
done = re.search(r"actually processed: (\d+)", text)
if not tps or not done or float(tps.group(1)) <= 0:
    sys.exit("pgbench gave no figure:\n" + text[-2000:])
secs = int(done.group(1)) / float(tps.group(1))
paid = int(sys.argv[2])
print(json.dumps({"attempts": int(done.group(1)), "seconds": round(secs, 3), "paid": paid,
                  "paid_per_s": round(paid / secs, 1), "clients": 8}))
PY
        then
            log "PostgreSQL alone: $(cat "$RAW/pg-alone.json")"
        else
            rm -f "$RAW/pg-alone.json" # reported without that figure
        fi
    fi

    # ------------------------------------------------------------ S4 and S1 through the relay
    if part relay; then
        log "S4 flash crowd, scale-out, PostgreSQL and Redis through the relays (${RELAY_DELAY_US} us each way)"
        so_crowd s4-relay "$SO_S4R" "$PG_RURL" "$REDIS_RURL" "$RELAY_PG_PID" "$RELAY_REDIS_PID"
        log "S4 scale-out through the relays: $(s4_summary s4-relay)"
    fi

    # ------------------------------------------------------------ frozen PostgreSQL
    # Two instances (--threads 2, --active-max 1000) under a booking load while every
    # PostgreSQL process is SIGSTOPped for FROZEN_S seconds; probes on fresh
    # connections (GET /healthz, a WAITING user's queue status) through both, at
    # FROZEN_PROBES / FROZEN_S per second for the whole run. The WAITING users stand
    # behind 1,000 ACTIVE ones on FROZENQ; the bookings (FROZEN, 1,000 charged users,
    # cheap seats) take a token each, so the 1,000 slots there are never all kept.
    if part frozen; then
        log "frozen PostgreSQL: ${FROZEN_S} s SIGSTOP under two instances, ${FROZEN_PROBES} probes in it, ${FROZEN_BOOK_RATE} bookings/s"
        so_pair fz "$PG_URL" "$REDIS_URL" --threads 2 --active-max 1000
        FZ1=$SO_P1 FZ2=$SO_P2 PIDF1=$SO_PID1 PIDF2=$SO_PID2
        "$LG" issue --target "127.0.0.1:$FZ1" --conns 16 --tokens "$WORK/pg-tokens.txt" --skip 20000 --users 1100 \
            --concert "$SO_FZQ" --probe-n 0 --save "$WORK/fzq.hdrs" >/dev/null 2>&1
        sort -n "$WORK/fzq.hdrs" | awk -F'\t' '$2 == "WAITING"' >"$WORK/fz-waiting.hdrs"
        [[ $(wc -l <"$WORK/fz-waiting.hdrs") -ge 50 ]] || { echo "bench: too few WAITING users for the frozen probe" >&2; exit 1; }
        FZ_BEFORE=3
        FZ_AFTER=$((FROZEN_RECOVER_S + 2))
        "$LG" probe --targets "127.0.0.1:$FZ1,127.0.0.1:$FZ2" --duration $((FZ_BEFORE + FROZEN_S + FZ_AFTER)) \
            --probe-rate "$(awk -v n="$FROZEN_PROBES" -v s="$FROZEN_S" 'BEGIN {print n / s}')" --hdrs "$WORK/fz-waiting.hdrs" \
            --book-rate "$FROZEN_BOOK_RATE" --tokens "$WORK/pg-tokens.txt" --skip 30000 --users 1000 --concert "$SO_FZ" \
            --schedules "$SO_FZ_SCHEDS" --log "$RAW/frozen.log" >"$RAW/frozen.json" 2>"$RAW/frozen.progress" &
        FZ_LG=$!
        PIDS+=("$FZ_LG")
        sleep "$FZ_BEFORE"
        FZ_T0=$(date +%s.%N)
        "$HARNESS/pg.sh" freeze "$WORK/pg"
        FZ_T1=$(date +%s.%N) # every PostgreSQL process is stopped from here...
        sleep "$FROZEN_S"
        FZ_T2=$(date +%s.%N) # ... to here
        "$HARNESS/pg.sh" thaw "$WORK/pg"
        FZ_T3=$(date +%s.%N)
        wait "$FZ_LG"
        forget_pid "$FZ_LG"
        # no restart: both instances are the processes started above, and ready
        FZ_ALIVE=0
        kill -0 "$PIDF1" 2>/dev/null && kill -0 "$PIDF2" 2>/dev/null && FZ_ALIVE=1
        FZ_READY=$(for p in "$FZ1" "$FZ2"; do curl -s -o /dev/null -w '%{http_code} ' -m 5 "http://127.0.0.1:$p/readyz" || true; done)
        stop_bx "$PIDF1" "$PIDF2"
        FZ_AUDIT=0
        "$BIN" audit --db "$PG_URL" --max-seats-per-user 4 >"$RAW/frozen-audit.txt" 2>&1 || FZ_AUDIT=$?
        printf '{"freeze_begin":%s,"frozen":%s,"thaw_begin":%s,"thawed":%s,"bound_ms":%s,"recover_s":%s,"alive":%s,"readyz":"%s","audit_rc":%s}\n' \
            "$FZ_T0" "$FZ_T1" "$FZ_T2" "$FZ_T3" "$FROZEN_BOUND_MS" "$FROZEN_RECOVER_S" "$FZ_ALIVE" "${FZ_READY% }" "$FZ_AUDIT" \
            >"$RAW/frozen-events.json"
        log "frozen PostgreSQL: $(cut -c1-400 "$RAW/frozen.json"); instances alive $FZ_ALIVE, readyz $FZ_READY, audit exit $FZ_AUDIT"
    fi

    "$HARNESS/redis.sh" stop "$WORK/redis" >/dev/null 2>&1 || true
    "$HARNESS/pg.sh" stop "$WORK/pg" >/dev/null 2>&1 || true
fi

# ---------------------------------------------------------------- report
for p in "${PIDS[@]}"; do stop_pid "$p"; done
PIDS=()
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$RAW/machine.txt"
echo "total_s=$(($(date +%s) - T_START))" >>"$RAW/machine.txt"
if [[ -n $ONLY ]]; then
    python3 "$ROOT/bench/report.py" "$RAW" "$ROOT" --partial
else
    python3 "$ROOT/bench/report.py" "$RAW" "$ROOT"
fi
log "done in $(($(date +%s) - T_START)) s"

