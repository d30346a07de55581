#!/usr/bin/env bash
# Prints the curl walkthrough of the whole purchase flow for `make run`.
set -euo pipefail
base="http://${1:-127.0.0.1:8080}"
cat <<TXT

boxoffice is starting on $base  (web page: $base/ ; stop with Ctrl-C)
Walk the whole flow with curl in another terminal (jq makes it easier):

  B=$base
  curl -s -XPOST \$B/api/v1/users -d '{"name":"mina","password":"correct horse"}'
  T=\$(curl -s -XPOST \$B/api/v1/sessions -d '{"name":"mina","password":"correct horse"}' | jq -r .accessToken)
  curl -s \$B/api/v1/concerts
  Q=\$(curl -s -XPOST -H "Authorization: Bearer \$T" \$B/api/v1/concerts/1/queue/tokens | jq -r .token)
  curl -s -H "Authorization: Bearer \$T" -H "X-Queue-Token: \$Q" \$B/api/v1/queue/status
  curl -s -H "Authorization: Bearer \$T" -H "X-Queue-Token: \$Q" \$B/api/v1/concerts/1/schedules
  curl -s -H "Authorization: Bearer \$T" -H "X-Queue-Token: \$Q" \$B/api/v1/schedules/1/seats
  R=\$(curl -s -XPOST -H "Authorization: Bearer \$T" -H "X-Queue-Token: \$Q" \$B/api/v1/reservations -d '{"scheduleId":1,"seatNo":7}' | jq -r .reservationId)
  curl -s -XPOST -H "Authorization: Bearer \$T" -H "Idempotency-Key: top-up-1" \$B/api/v1/users/me/balance/charge -d '{"amount":100000}'
  curl -s -XPOST -H "Authorization: Bearer \$T" -H "X-Queue-Token: \$Q" -H "Idempotency-Key: pay-1" \$B/api/v1/payments -d "{\"reservationId\":\$R}"
  curl -s -H "Authorization: Bearer \$T" \$B/api/v1/users/me/payments
  curl -s -H "Authorization: Bearer \$T" -H "X-Queue-Token: \$Q" \$B/api/v1/queue/status   # 410: the token ended with the payment

Demo users from the seed: alice / alice-demo-pw and bob / bob-demo-pw (200,000 won each).
Admin key: demo-admin-key (header X-Admin-Key) for POST /api/v1/admin/concerts.

TXT
