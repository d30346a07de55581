#!/usr/bin/env bash
# A frozen PostgreSQL (every server process SIGSTOPped for 10 s: what a hung host
# or a partition that still ACKs looks like) under one scale-out instance: what
# clients see while it is frozen, and that service resumes once it thaws. Not part
# of `make test` (its outages need wider timeouts than the fault suite's nginx
# front); run by hand:  scripts/fault-pg-frozen.sh [BUILD_DIR]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bin=${1:-build}/boxoffice
d=$(mktemp -d /tmp/bx-frozen.XXXXXX)
mkdir -p "$d/pg" "$d/redis"
pg=$(tests/harness/pg.sh start "$d/pg" 2>/dev/null) || { echo "cannot start PostgreSQL"; exit 1; }
rd=$(tests/harness/redis.sh start "$d/redis" 2>/dev/null) || { echo "cannot start Redis"; exit 1; }
port=18600
base=http://127.0.0.1:$port
frozen=""
cleanup() {
  [[ -n $frozen ]] && tests/harness/pg.sh thaw "$d/pg"
  [[ -n ${srv:-} ]] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
  tests/harness/pg.sh stop "$d/pg" >/dev/null 2>&1
  tests/harness/redis.sh stop "$d/redis" >/dev/null 2>&1
  rm -rf "$d"
}
trap cleanup EXIT
"$bin" migrate --db "$pg" >/dev/null 2>&1
"$bin" serve --listen "127.0.0.1:$port" --db "$pg" --queue "$rd" --admin-key k --threads 2 --log-level warn \
  >"$d/serve.log" 2>&1 &
srv=$!
for _ in $(seq 50); do curl -sf "$base/readyz" >/dev/null && break; sleep 0.1; done
body='{"name":"frozen","password":"correct horse battery"}'
curl -s -X POST -H 'content-type: application/json' -d "$body" "$base/api/v1/users" >/dev/null
at=$(curl -s -X POST -H 'content-type: application/json' -d "$body" "$base/api/v1/sessions" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["accessToken"])')
charge() { # key → "status seconds"
  curl -s -o /dev/null -w "%{http_code} %{time_total}" -m 30 -X POST -H "Authorization: Bearer $at" \
    -H 'content-type: application/json' -H "Idempotency-Key: $1" -d '{"amount":100}' "$base/api/v1/users/me/balance/charge"
}
tests/harness/pg.sh freeze "$d/pg"
frozen=1
t0=$(date +%s.%N)
waiting=()
for k in 1 2 3; do
  (echo "charge while frozen: $(charge f$k) s") &
  waiting+=($!)
done
sleep 0.5
echo "healthz while frozen: $(curl -s -o /dev/null -w '%{http_code} %{time_total}' -m 30 "$base/healthz") s"
wait "${waiting[@]}"
sleep 1
echo "charge later while frozen: $(charge f9) s"
sleep "$(python3 -c "print(max(0, 10 - ($(date +%s.%N) - $t0)))")"
tests/harness/pg.sh thaw "$d/pg"
frozen=""
t1=$(date +%s.%N)
for i in $(seq 80); do
  r=$(charge "after$i")
  [[ $r == 200* ]] && { echo "first charge acknowledged $(python3 -c "print(round($(date +%s.%N) - $t1, 2))") s after the thaw"; break; }
  sleep 0.1
done
kill "$srv"; wait "$srv"; srv=""
"$bin" audit --db "$pg" >/dev/null 2>&1
echo "audit exit $?"
