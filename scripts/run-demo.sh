#!/usr/bin/env bash
# run-demo.sh — what `make run` does after the build: migrate and seed the demo
# database, serve it, and print the curl walkthrough only once the server is
# listening (a start that fails shows its error, not the walkthrough).
#   scripts/run-demo.sh BIN DATA LISTEN ADMIN_KEY
# The server's log goes through this script unchanged; the walkthrough follows
# its "boxoffice serving on" line (src/http/server.c). Exits with the server's
# exit code. Ctrl-C stops the server gracefully (it drains, then exits 0).
set -euo pipefail
bin=${1:?usage: run-demo.sh BIN DATA LISTEN ADMIN_KEY}
data=${2:?DATA}
listen=${3:?LISTEN}
admin_key=${4:?ADMIN_KEY}
db="sqlite:$data/boxoffice.db"
base="http://$listen"

mkdir -p "$data"
"$bin" migrate --db "$db"
"$bin" seed --db "$db"

walkthrough() {
  cat <<TXT

boxoffice is serving on $base  (web page: $base/ ; stop with Ctrl-C)
Walk the whole flow with curl in another terminal (needs jq; safe to run again:
each run signs up a new user and takes the first free seat):

  B=$base/api/v1; U=mina-\$RANDOM; P='correct horse'
  curl -s \$B/users --json "{\"name\":\"\$U\",\"password\":\"\$P\"}"
  T=\$(curl -s \$B/sessions --json "{\"name\":\"\$U\",\"password\":\"\$P\"}" | jq -r .accessToken)
  A="Authorization: Bearer \$T"
  curl -s \$B/concerts
  Q=\$(curl -s -XPOST -H "\$A" \$B/concerts/1/queue/tokens | jq -r .token)
  curl -s -H "\$A" -H "X-Queue-Token: \$Q" \$B/queue/status
  S=\$(curl -s -H "\$A" -H "X-Queue-Token: \$Q" \$B/concerts/1/schedules | jq '[.schedules[] | select(.availableSeats > 0)][0].scheduleId')
  N=\$(curl -s -H "\$A" -H "X-Queue-Token: \$Q" "\$B/schedules/\$S/seats?format=compact" | jq '.availability | index("1") + 1')
  R=\$(curl -s -H "\$A" -H "X-Queue-Token: \$Q" \$B/reservations --json "{\"scheduleId\":\$S,\"seatNo\":\$N}" | jq .reservationId)
  curl -s -H "\$A" -H "Idempotency-Key: top-up-\$U" \$B/users/me/balance/charge --json '{"amount":100000}'
  curl -s -H "\$A" -H "X-Queue-Token: \$Q" -H "Idempotency-Key: pay-\$R" \$B/payments --json "{\"reservationId\":\$R}"
  curl -s -H "\$A" \$B/users/me/payments
  curl -s -H "\$A" -H "X-Queue-Token: \$Q" \$B/queue/status   # 410: the token ended with the payment

Demo users from the seed: alice / alice-demo-pw and bob / bob-demo-pw (200,000 won each).
Admin key: $admin_key (header X-Admin-Key) for POST /api/v1/admin/concerts.
To start again from an empty database: stop the server, then rm -rf $data

TXT
}

# Relays the server's log; prints the walkthrough after the line that says it
# listens. Ignores Ctrl-C so that the server's last lines (drain, "stopped") still
# get through; ends when the server closes its output.
relay() {
  trap '' INT
  local line shown=0
  while IFS= read -r line; do
    printf '%s\n' "$line"
    if ((shown == 0)) && [[ $line == *'"msg":"boxoffice serving on '* ]]; then
      walkthrough
      shown=1
    fi
  done
}

"$bin" serve --listen "$listen" --db "$db" --admin-key "$admin_key" 2>&1 | relay
