#!/usr/bin/env bash
# Runs every Criterion test program of each build directory given (unit first,
# then HTTP against that build's binary) and ends with one line CI can read:
# "N passed, N failed". Exit status 0 only when nothing failed.
set -uo pipefail
cd "$(dirname "$0")/.."

# Sanitizer builds: any UB report fails the run; h2o's own exit-time allocations are suppressed.
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"

passed=0 failed=0 broken=()
out_dir=${BOXOFFICE_TEST_OUTPUT:-test-output}
mkdir -p "$out_dir"

run_suite() { # build-dir test-exe
  local dir=$1 exe=$2 name log
  name="$(basename "$dir")/$(basename "$exe")"
  log="$out_dir/$(basename "$dir")-$(basename "$exe").log"
  echo "== $name"
  BOXOFFICE_BIN="$PWD/$dir/boxoffice" "$exe" --jobs 2 --short-filename >"$log" 2>&1
  local rc=$?
  # Criterion: "[====] Synthesis: Tested: 12 | Passing: 12 | Failing: 0 | Crashing: 0"
  local line t p f c
  line=$(grep -a 'Synthesis:' "$log" | tail -n 1)
  if [[ $line =~ Tested:\ ([0-9]+)\ \|\ Passing:\ ([0-9]+)\ \|\ Failing:\ ([0-9]+)\ \|\ Crashing:\ ([0-9]+) ]]; then
    t=${BASH_REMATCH[1]} p=${BASH_REMATCH[2]} f=${BASH_REMATCH[3]} c=${BASH_REMATCH[4]}
    passed=$((passed + p)); failed=$((failed + f + c))
    echo "   $p/$t passed"
  else
    t=0; failed=$((failed + 1)); echo "   no summary (exit $rc)"
  fi
  grep -a -E '^\[(FAIL|----)\]|figure:' "$log" | grep -av 'Synthesis' | head -n 40
  if [[ $rc -ne 0 || ( -n ${f:-} && $((f + c)) -gt 0 ) ]]; then
    broken+=("$name"); echo "   log: $log"; tail -n 30 "$log" | sed 's/^/   | /'
  fi
  f=0 c=0
}

for dir in "$@"; do
  for exe in "$dir"/tests/unit/test_* "$dir"/tests/http/http_test_*; do
    [[ -x $exe && -f $exe ]] || continue
    run_suite "$dir" "$exe"
  done
done

((${#broken[@]})) && echo "failed suites: ${broken[*]}"
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
