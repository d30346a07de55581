#!/usr/bin/env bash
# Browser tests: real headless Chromium (Debian's chromium + chromium-driver, driven over
# plain WebDriver HTTP from Node's built-in fetch; no npm packages) against real boxoffice
# servers. Run from anywhere; the repo root is found from this file.
#   BOXOFFICE_BIN          server binary (default <repo>/build/boxoffice)
#   BOXOFFICE_TEST_OUTPUT  screenshots and failure logs (default ./test-output)
#   tests/browser/run.sh [test-name ...]   runs only the named tests
# The last line is always "browser: N passed, M failed"; exit 0 only when M = 0.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export BOXOFFICE_BIN=${BOXOFFICE_BIN:-$repo/build/boxoffice}
export BOXOFFICE_TEST_OUTPUT=${BOXOFFICE_TEST_OUTPUT:-$PWD/test-output}

missing=()
command -v node >/dev/null || missing+=(nodejs)
[[ -x ${CHROMIUM_BIN:-/usr/bin/chromium} ]] || missing+=(chromium)
[[ -x ${CHROMEDRIVER_BIN:-/usr/bin/chromedriver} ]] || missing+=(chromium-driver)
if ((${#missing[@]})); then
  echo "browser tests need: ${missing[*]} (scripts/deps.sh test installs them)"
  echo "browser: 0 passed, 1 failed"
  exit 1
fi
if [[ ! -x $BOXOFFICE_BIN ]]; then
  echo "boxoffice binary not found at $BOXOFFICE_BIN (build it first, or set BOXOFFICE_BIN)"
  echo "browser: 0 passed, 1 failed"
  exit 1
fi
if ! node -e 'process.exit(typeof fetch === "function" && +process.versions.node.split(".")[0] >= 18 ? 0 : 1)'; then
  echo "browser tests need Node.js 18 or newer (found $(node --version))"
  echo "browser: 0 passed, 1 failed"
  exit 1
fi

node "$here/tests.mjs" "$@"
rc=$?
# tests.mjs prints the summary itself; if it died before that, say so here.
exit $rc
