#!/usr/bin/env bash
# run.sh — validates docs/openapi.yaml, and every response the HTTP suites
# recorded (BOXOFFICE_TEST_OPENAPI_LOG, see tests/harness/harness.c) against it,
# with tests/openapi/validate.mjs. Installs the pinned packages of
# package-lock.json first (npm ci, again only when the lock file changes).
#   tests/openapi/run.sh RECORDS.jsonl
# Last line: "openapi: N passed, M failed".
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
records=${1:?usage: run.sh RECORDS.jsonl}
give_up() { echo "$1"; echo "openapi: 0 passed, 1 failed"; exit 1; }

command -v node >/dev/null && command -v npm >/dev/null || give_up "needs node and npm (scripts/deps.sh test installs them)"
want=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
stamp=$here/node_modules/.package-lock.sha256
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) || give_up "npm ci failed in $here"
  echo "$want" >"$stamp"
fi
[[ -s $records ]] || give_up "no responses recorded in $records"
exec node "$here/validate.mjs" "$repo/docs/openapi.yaml" "$records"
