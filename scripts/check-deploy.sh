#!/usr/bin/env bash
# check-deploy.sh — keeps deploy/boxoffice.service honest:
#  1. its sandbox scores at most 2.0 ("OK") in `systemd-analyze security`;
#  2. boxoffice (migrate, seed, then serve under a short purchase flow, as an
#     unprivileged user like the service's) makes no system call that the unit's
#     SystemCallFilter lines refuse (traced with strace -f).
# Last line: "deploy: N passed, M failed".
#   scripts/check-deploy.sh BUILD_DIR
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
build=${1:-build}
unit=deploy/boxoffice.service
bin=$PWD/$build/boxoffice
passed=0 failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
bad() { echo "FAIL $*"; failed=$((failed + 1)); }

for tool in systemd-analyze strace curl jq setpriv; do
  command -v "$tool" >/dev/null || { echo "missing $tool (scripts/deps.sh test installs it)"; echo "deploy: 0 passed, 1 failed"; exit 1; }
done

# 1. exposure score
score=$(systemd-analyze security --offline=yes "$unit" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
if [[ -n $score ]] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
  ok "systemd-analyze security: $score (at most 2.0)"
else
  bad "systemd-analyze security: ${score:-no score} (over 2.0)"
  systemd-analyze security --offline=yes "$unit" 2>&1 | grep '✗' | head -20
fi

# 2. system calls against the unit's filter
expand() { # system call sets (@name) and names → names, one a line
  local todo=("$@") seen=" " s items
  while ((${#todo[@]})); do
    s=${todo[0]}
    todo=("${todo[@]:1}")
    if [[ $s != @* ]]; then
      echo "$s"
    elif [[ $seen != *" $s "* ]]; then
      seen+="$s "
      mapfile -t items < <(systemd-analyze syscall-filter "$s" 2>/dev/null | sed -e 's/#.*//' | awk 'NF' | tail -n +2 | tr -d ' ')
      todo+=("${items[@]}")
    fi
  done
}
work=$(mktemp -d /tmp/bx-deploy.XXXXXX)
cleanup() { [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
allow=$work/allow deny=$work/deny used=$work/used
: >"$allow"; : >"$deny"
while IFS= read -r line; do
  value=${line#SystemCallFilter=}
  if [[ $value == ~* ]]; then
    expand ${value#\~} >>"$deny"
  else
    expand $value >>"$allow"
  fi
done < <(grep '^SystemCallFilter=' "$unit")
sort -u -o "$allow" "$allow"; sort -u -o "$deny" "$deny"
comm -23 "$allow" "$deny" >"$work/permitted"

cp "$bin" "$work/boxoffice"
mkdir -p "$work/data" "$work/traces"
chmod 755 "$work" "$work/boxoffice"
chown 65534:65534 "$work/data" "$work/traces" 2>/dev/null
as_user=()
((EUID == 0)) && as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
db="sqlite:$work/data/bx.db"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cheap=(--pwhash-ops 1 --pwhash-mem-kib 8)
trace() { "${as_user[@]}" strace -f -qq -o "$work/traces/$1" "$work/boxoffice" "$@"; }
trace migrate --db "$db" >"$work/out" 2>&1 && trace seed --db "$db" "${cheap[@]}" >>"$work/out" 2>&1 ||
  { bad "migrate/seed under strace: $(tail -3 "$work/out")"; echo "deploy: $passed passed, $((failed)) failed"; exit 1; }
"${as_user[@]}" strace -f -qq -o "$work/traces/serve" "$work/boxoffice" serve --listen "127.0.0.1:$port" --db "$db" \
  --admin-key k --web-root "$PWD/web" --threads 2 "${cheap[@]}" >"$work/serve.log" 2>&1 &
pid=$!
b=http://127.0.0.1:$port/api/v1
for _ in $(seq 100); do curl -sf "$b/../healthz" >/dev/null 2>&1 && break; sleep 0.1; done
flow_ok=1
{
  curl -sf "$b/users" --json '{"name":"deploy","password":"correct horse"}' >/dev/null &&
  t=$(curl -sf "$b/sessions" --json '{"name":"deploy","password":"correct horse"}' | jq -r .accessToken) &&
  q=$(curl -sf -XPOST -H "Authorization: Bearer $t" "$b/concerts/1/queue/tokens" | jq -r .token) &&
  r=$(curl -sf -H "Authorization: Bearer $t" -H "X-Queue-Token: $q" "$b/reservations" \
        --json '{"scheduleId":1,"seatNo":5}' | jq .reservationId) &&
  curl -sf -H "Authorization: Bearer $t" "$b/users/me/balance/charge" --json '{"amount":50000}' >/dev/null &&
  curl -sf -H "Authorization: Bearer $t" -H "X-Queue-Token: $q" "$b/payments" --json "{\"reservationId\":$r}" >/dev/null &&
  curl -sf "http://127.0.0.1:$port/" >/dev/null && curl -sf "http://127.0.0.1:$port/metrics" >/dev/null
} || flow_ok=0
sleep 1.2 # a tick of housekeeping and the hold sweeper
server=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null | awk '{print $1}')
[[ -n $server ]] && kill -TERM "$server"
wait "$pid"
pid=
if ((flow_ok)); then ok "purchase flow against the traced server"; else bad "purchase flow failed: $(tail -5 "$work/serve.log")"; fi
cat "$work"/traces/* | sed -E 's/^[0-9]+ +//' | grep -oE '^[a-z_0-9]+\(' | tr -d '(' | sort -u >"$used"
refused=$(comm -23 "$used" "$work/permitted" | tr '\n' ' ')
if [[ -z $refused ]]; then
  ok "$(wc -l <"$used") distinct system calls, all allowed by the unit's SystemCallFilter"
else
  bad "system calls the unit's SystemCallFilter refuses: $refused"
fi
echo "deploy: $passed passed, $failed failed"
((failed == 0))
