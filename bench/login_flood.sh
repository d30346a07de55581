#!/usr/bin/env bash
# bench/login_flood.sh — issue 12 item 1: a log-in flood must not starve real log-ins.
#
#   bench/login_flood.sh [BUILD_DIR]            (default: $BUILD or build)
#
# Starts one embedded boxoffice on loopback with the production defaults
# (argon2id 64 MiB x 2 passes, one event loop and one hashing thread per core,
# --address-rate-limit 5/s burst 20, --login-tries 5, --hash-wait 2000 ms),
# signs up one real user, and per scenario:
#   onset    the flood starts (bench/login_flood.c: CONNS connections posting
#            POST /api/v1/sessions with a new random name each time, so no per-name
#            limit can trigger, and a wrong password, closed loop, from FLOOD_FROM)
#            and the real user logs in from 127.0.0.1 every PROBE_GAP_MS for its
#            first ONSET_MS. Reported: the defences need the address's first 20
#            failed log-ins and a few backoff doublings to engage;
#   then ROUNDS times, alternating (the machine's own load drift spreads over both):
#   quiet    PROBES log-ins of the real user, nothing else running;
#   flooded  PROBES log-ins while the flood runs again (after 2 s of it).
#
# Scenarios: "one" (the attack of the issue: 32 connections from 127.0.0.2) is the
# bar; "many" (one connection each from 127.0.0.10-41: a distributed flood, 32
# addresses that the per-address limits cannot tell from 32 real users) is reported.
#
# Bar: flooded p99 <= 2 x quiet p50 (the log-in's unloaded time). Also printed:
# quiet p99 (this machine's own noise), the onset, the flood's answers by status.
#
# Knobs (environment): ROUNDS (3), PROBES (15 per phase and round), CONNS (32),
# PROBE_GAP_MS (200), ONSET_MS (15000), SCENARIOS ("one many"), BENCH_KEEP=1 keeps
# the work directory. Output: human lines, then one JSON object per scenario on a
# line starting with "json: " (for bench/run.sh / report.py to pick up). Exit 0 when
# it ran to the end (a FAIL is reported, not fatal).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-${BUILD:-build}}
[[ $BUILD = /* ]] || BUILD=$ROOT/$BUILD
BIN=$BUILD/boxoffice
ROUNDS=${ROUNDS:-3}
PROBES=${PROBES:-15}
CONNS=${CONNS:-32}
PROBE_GAP_MS=${PROBE_GAP_MS:-200}
ONSET_MS=${ONSET_MS:-15000}
SCENARIOS=${SCENARIOS:-one many}
USER_NAME=mina
USER_PW='correct horse battery'

for tool in cc curl python3; do
    command -v "$tool" >/dev/null || { echo "login_flood: $tool is missing" >&2; exit 1; }
done
[[ -x $BIN ]] || { echo "login_flood: no $BIN: build first (make build)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/boxoffice-login-flood.XXXXXX)
BX_PID=
cleanup() {
    if [[ -n $BX_PID ]]; then
        kill -TERM "$BX_PID" 2>/dev/null || true
        wait "$BX_PID" 2>/dev/null || true
    fi
    if [[ ${BENCH_KEEP:-0} = 1 ]]; then echo "login_flood: work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

cc -O2 -Wall -Wextra -o "$WORK/login_flood" "$ROOT/bench/login_flood.c"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=
while [[ -z $PORT ]]; do
    p=$((15000 + RANDOM % 17000))
    port_free "$p" && PORT=$p
done
URL=http://127.0.0.1:$PORT

"$BIN" serve --listen "127.0.0.1:$PORT" --db "sqlite:$WORK/bx.db" --web-root "" >"$WORK/server.log" 2>&1 &
BX_PID=$!
for _ in $(seq 1 200); do
    curl -fs -o /dev/null "$URL/readyz" && break
    sleep 0.05
done
curl -fs -o /dev/null "$URL/readyz" || { echo "login_flood: the server did not start:" >&2; tail "$WORK/server.log" >&2; exit 1; }
curl -fs -o /dev/null -XPOST "$URL/api/v1/users" -d "{\"name\":\"$USER_NAME\",\"password\":\"$USER_PW\"}"

cores=$(nproc)
echo "login_flood: boxoffice on 127.0.0.1:$PORT, $cores cores," \
    "defaults (argon2id 64 MiB x 2), load average $(cut -d' ' -f1-3 /proc/loadavg)"

probe() { # raw-file conns flood-from [login_flood options]
    local raw=$1 conns=$2 from=$3
    shift 3
    "$WORK/login_flood" --target "127.0.0.1:$PORT" --user "$USER_NAME" --password "$USER_PW" \
        --conns "$conns" --flood-from "$from" --probe-from 127.0.0.1 --probes "$PROBES" \
        --probe-gap-ms "$PROBE_GAP_MS" --warmup-ms 2000 --raw "$raw" "$@"
}

for scenario in $SCENARIOS; do
    case $scenario in
        one) from=127.0.0.2 label="$CONNS connections from one address" ;;
        many)
            from=$(for i in $(seq 10 $((9 + CONNS))); do printf '127.0.0.%d,' "$i"; done)
            from=${from%,} label="$CONNS connections from $CONNS addresses"
            ;;
        *) echo "login_flood: unknown scenario $scenario" >&2; exit 1 ;;
    esac
    quiet=$WORK/$scenario-quiet.txt flooded=$WORK/$scenario-flooded.txt floods=$WORK/$scenario-flood.json
    onset=$WORK/$scenario-onset.txt
    : >"$quiet"; : >"$flooded"; : >"$floods"; : >"$onset"
    probe "$onset" "$CONNS" "$from" --warmup-ms 0 --probes 10000 --duration-ms "$ONSET_MS" >/dev/null
    sleep 2
    for r in $(seq 1 "$ROUNDS"); do
        probe "$quiet" 0 127.0.0.2 >/dev/null
        probe "$flooded" "$CONNS" "$from" >>"$floods"
        sleep 2 # the tarpitted refusals of the last round drain
    done
    python3 - "$scenario" "$label" "$quiet" "$flooded" "$floods" "$onset" "$ONSET_MS" <<'EOF'
import json, math, sys
scenario, label, quiet_f, flooded_f, floods_f, onset_f, onset_ms = sys.argv[1:]
def load(path):
    rows = [l.split() for l in open(path) if l.strip()]
    return sorted(float(r[0]) for r in rows), [int(r[1]) for r in rows]
def pct(xs, p):
    return xs[max(0, min(len(xs) - 1, math.ceil(p * len(xs)) - 1))] if xs else float('nan')
q, qst = load(quiet_f)
f, fst = load(flooded_f)
o, ost = load(onset_f)
flood = {}
answers = secs = 0
for line in open(floods_f):
    j = json.loads(line)
    answers += j['flood_answers']; secs += j['seconds']
    for k, v in j['flood_statuses'].items():
        flood[k] = flood.get(k, 0) + v
bar = 2 * pct(q, 0.5)
ok = pct(f, 0.99) <= bar and all(s == 200 for s in fst)
print(f"login_flood [{label}]: real log-in quiet p50 {pct(q, .5):.0f} ms p99 {pct(q, .99):.0f} ms "
      f"({len(q)} probes); flooded p50 {pct(f, .5):.0f} ms p99 {pct(f, .99):.0f} ms max {f[-1]:.0f} ms "
      f"({len(f)} probes, {sum(s == 200 for s in fst)} answered 200)")
print(f"login_flood [{label}]: onset (first {int(onset_ms) // 1000} s of the flood): p50 {pct(o, .5):.0f} ms "
      f"p99 {pct(o, .99):.0f} ms max {o[-1]:.0f} ms ({len(o)} probes, {sum(s == 200 for s in ost)} answered 200)")
print(f"login_flood [{label}]: the flood got {answers} answers ({answers / secs:.0f}/s): "
      + ", ".join(f"{k} x{v}" for k, v in sorted(flood.items())))
load = open("/proc/loadavg").read().split()[0]
print(f"login_flood [{label}]: this machine's own noise: quiet p99 = {pct(q, .99) / pct(q, .5):.2f} x quiet p50 "
      f"(load average {load}); flooded p99 = {pct(f, .99) / pct(q, .99):.2f} x quiet p99")
print(f"login_flood [{label}]: bar flooded p99 <= 2 x quiet p50: {pct(f, .99):.0f} ms <= {bar:.0f} ms: "
      f"{'PASS' if ok else 'FAIL'}{'' if scenario == 'one' else ' (reported, not the bar)'}")
print("json: " + json.dumps({"scenario": "login_flood_" + scenario, "label": label,
      "quiet_p50_ms": round(pct(q, .5), 1), "quiet_p99_ms": round(pct(q, .99), 1),
      "flooded_p50_ms": round(pct(f, .5), 1), "flooded_p99_ms": round(pct(f, .99), 1),
      "flooded_max_ms": round(f[-1], 1), "flooded_ok": sum(s == 200 for s in fst), "probes": len(f),
      "onset_p50_ms": round(pct(o, .5), 1), "onset_p99_ms": round(pct(o, .99), 1), "onset_probes": len(o),
      "flood_per_s": round(answers / secs), "flood_statuses": flood,
      "bar_ms": round(bar, 1), "pass": ok, "is_bar": scenario == "one", "load_average": float(load)}))
EOF
done
