#!/usr/bin/env bash
# Runs every test of each build directory given: unit suites (memory + SQLite,
# then Redis + PostgreSQL against throwaway servers), the HTTP suites against
# that build's binary, and — for the first build only — the browser tests.
# Ends with one line CI can read: "N passed, N failed"; exit 0 only when nothing failed.
#   scripts/run-tests.sh build [build-asan ...]
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
repo=$PWD

# Sanitizer builds: any UB report fails the run; h2o's own exit-time allocations are suppressed.
export LSAN_OPTIONS="suppressions=$repo/tests/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1"

out_dir=${BOXOFFICE_TEST_OUTPUT:-$repo/test-output}
mkdir -p "$out_dir"
export BOXOFFICE_TEST_OUTPUT=$out_dir
# Every response of the HTTP suites, for the OpenAPI check at the end.
export BOXOFFICE_TEST_OPENAPI_LOG=$out_dir/openapi-responses.jsonl
rm -f "$BOXOFFICE_TEST_OPENAPI_LOG"
passed=0 failed=0 broken=()
# What failed, repeated just above the summary (CI shows the tail of the output).
details=$(mktemp /tmp/boxoffice-failures.XXXXXX)

# One lane per build, side by side (the suites mostly wait on servers and clocks;
# one after the other they would leave the two cores idle much of the time). A
# build that is not compiled yet (make test compiles only the first before this
# script) is compiled at the head of its lane, while the first lane already runs.
# Each lane has its own throwaway PostgreSQL and Redis (suites stop and freeze
# them), stopped whatever happens. The first lane prints as it goes, the others
# when they end; the counts add up at the end.
scratch=/tmp
[[ -d /dev/shm && -w /dev/shm ]] && scratch=/dev/shm
svc_dir=$(mktemp -d "$scratch/boxoffice-services.XXXXXX")
export BOXOFFICE_TEST_TMP=$svc_dir/servers
cleanup() {
  local d
  for d in "$svc_dir"/*/; do
    tests/harness/pg.sh stop "${d}pg" >/dev/null 2>&1
    tests/harness/redis.sh stop "${d}redis" >/dev/null 2>&1
  done
  rm -rf "$svc_dir" "$details"
}
trap cleanup EXIT

start_services() { # lane: exports the servers' URLs for this lane's suites
  local dir=$svc_dir/$1 url
  mkdir -p "$dir/pg" "$dir/redis"
  if url=$(tests/harness/pg.sh start "$dir/pg" 2>/dev/null); then
    export BOXOFFICE_TEST_PG_URL=$url
  else
    echo "could not start PostgreSQL: the PostgreSQL suites will fail"
  fi
  if url=$(tests/harness/redis.sh start "$dir/redis" 2>/dev/null); then
    export BOXOFFICE_TEST_REDIS_URL=${url%/0}/9
  else
    echo "could not start Redis: the Redis suites will fail"
  fi
}

# One Criterion program: its "Synthesis" line gives the counts.
run_criterion() { # build-dir exe [mode]
  local dir=$1 exe=$2 mode=${3:-} name log rc line t=0 p=0 f=0 c=0
  name="$(basename "$dir")/$(basename "$exe")${mode:+ [$mode]}"
  log="$out_dir/$(basename "$dir")-$(basename "$exe")${mode:+-$mode}.log"
  echo "== $name"
  local t0=$SECONDS
  BOXOFFICE_BIN="$repo/$dir/boxoffice" BOXOFFICE_TEST_MODE=${mode:-embedded} \
    "$exe" --jobs 2 --short-filename >"$log" 2>&1
  rc=$?
  local took=$((SECONDS - t0))
  line=$(grep -a 'Synthesis:' "$log" | tail -n 1)
  if [[ $line =~ Tested:\ ([0-9]+)\ \|\ Passing:\ ([0-9]+)\ \|\ Failing:\ ([0-9]+)\ \|\ Crashing:\ ([0-9]+) ]]; then
    t=${BASH_REMATCH[1]} p=${BASH_REMATCH[2]} f=${BASH_REMATCH[3]} c=${BASH_REMATCH[4]}
    echo "   $p/$t passed (${took} s)"
  else
    f=1
    echo "   no summary (exit $rc)"
  fi
  passed=$((passed + p))
  failed=$((failed + f + c))
  # figures the suites print for the record (races, restarts, memory)
  grep -a -E '^(figure|holds|charges|payments|audit)|\[WARN\]' "$log" | grep -av Synthesis | head -n 20 | sed 's/^/   /'
  if ((rc != 0 || f + c > 0)); then
    broken+=("$name")
    { echo "-- $name"; grep -a -E '^\[(FAIL|----)\]' "$log" | head -n 30 | sed 's/^/   /'; echo "   log: $log"; } |
      tee -a "$details"
  fi
}

run_browser() { # build-dir
  local dir=$1 log line
  log="$out_dir/$(basename "$dir")-browser.log"
  echo "== $(basename "$dir")/browser"
  BOXOFFICE_BIN="$repo/$dir/boxoffice" tests/browser/run.sh >"$log" 2>&1
  line=$(tail -n 1 "$log")
  if [[ $line =~ ^browser:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    failed=$((failed + BASH_REMATCH[2]))
    echo "   ${BASH_REMATCH[1]} passed, ${BASH_REMATCH[2]} failed"
    ((BASH_REMATCH[2] == 0)) || { broken+=("browser"); { echo "-- browser"; tail -n 30 "$log" | sed 's/^/   | /'; } | tee -a "$details"; }
  else
    failed=$((failed + 1))
    broken+=("browser")
    echo "   no summary"; tail -n 30 "$log" | sed 's/^/   | /'
  fi
}

run_build() { # build-dir: its unit suites, then every HTTP suite in both modes
  local dir=$1 exe mode
  for exe in "$dir"/tests/unit/test_*; do
    [[ -x $exe && -f $exe ]] && run_criterion "$dir" "$exe"
  done
  # Every HTTP suite runs in both modes (CONTRACT §2): one process on SQLite, then two
  # instances on PostgreSQL + Redis behind nginx. test_scaleout is scale-out only.
  for mode in embedded scaleout; do
    for exe in "$dir"/tests/http/http_test_*; do
      [[ -x $exe && -f $exe ]] || continue
      [[ $exe == *http_test_scaleout && $mode == embedded ]] && continue
      # The crash suite under the sanitizers runs embedded only (24 s; scale-out is
      # 50 s more): what ASan found there (RELIABILITY.md: loops sharing h2o's
      # per-thread allocator) is in the HTTP layer, the same in both modes, and the
      # scale-out paths run under ASan in the fault and concurrency suites.
      [[ $exe == *http_test_crash && $mode == scaleout && $(basename "$dir") == *asan* ]] && continue
      run_criterion "$dir" "$exe" "$mode"
    done
  done
}

# Hygiene on the first (plain) build: fuzz smoke (replays every saved crash first),
# cppcheck + clang-tidy, the flow suite with the server under valgrind.
run_summary() { # name command...  (the command's last line: "<name>: N passed, M failed")
  local name=$1 log line
  shift
  log="$out_dir/$name.log"
  echo "== $name"
  local t0=$SECONDS
  "$@" >"$log" 2>&1
  line=$(tail -n 1 "$log")
  if [[ $line =~ ^$name:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed=$((passed + BASH_REMATCH[1]))
    failed=$((failed + BASH_REMATCH[2]))
    echo "   ${BASH_REMATCH[1]} passed, ${BASH_REMATCH[2]} failed ($((SECONDS - t0)) s)"
    ((BASH_REMATCH[2] == 0)) || { broken+=("$name"); { echo "-- $name"; tail -n 30 "$log" | sed 's/^/   | /'; } | tee -a "$details"; }
  else
    failed=$((failed + 1))
    broken+=("$name")
    echo "   no summary"
    tail -n 30 "$log" | sed 's/^/   | /'
  fi
}
# The checks are split over the first lane and the last one, which ends sooner.
hygiene_first() { # first build-dir
  run_summary fuzz tests/fuzz/run.sh 3 build-fuzz
  run_summary lint scripts/lint.sh "$1"
  run_summary docs scripts/check-docs.sh
}
hygiene_last() { # first build-dir
  run_summary valgrind scripts/valgrind-http.sh "$1"
  run_summary deploy scripts/check-deploy.sh "$1"
}

# lane NAME COMMAND...: runs the command in a subshell with its own counts, failure
# details and recorded responses; leaves them in $lanes/NAME.* for the sums below.
lanes=$(mktemp -d "$svc_dir/lanes.XXXXXX")
lane() {
  local name=$1
  shift
  (
    passed=0 failed=0 broken=()
    details=$lanes/$name.details
    export BOXOFFICE_TEST_OPENAPI_LOG=$lanes/$name.openapi.jsonl
    : >"$details"
    start_services "$name"
    "$@"
    ((${#broken[@]})) && printf '%s\n' "${broken[@]}" >"$lanes/$name.broken"
    echo "$passed $failed" >"$lanes/$name.sum"
  )
}

# One lane per build: it compiles the build if needed (ninja's output in the
# lane's log; a failure counts once), then runs its suites; the first build's lane
# then runs the browser tests and half of the hygiene checks, the last lane the
# other half, on the first build (the ASan lane has less to run). (Five lanes,
# each build's embedded and scale-out suites apart, were 1.5 min faster with the
# builds compiled, but starved the timing-bound suites into flakes.)
build_lane() { # build-dir first-build-dir [first] [last]
  local dir=$1 first_dir=$2 name log
  shift 2
  name=$(basename "$dir") log=$out_dir/$(basename "$dir")-compile.log
  if ! ninja -C "$dir" >"$log" 2>&1; then
    failed=$((failed + 1)) broken+=("$name (does not compile: $log)")
    tail -n 30 "$log"
  else
    run_build "$dir"
    if [[ " $* " == *" first "* ]]; then
      run_browser "$dir"
      hygiene_first "$dir"
    fi
  fi
  if [[ " $* " == *" last "* ]]; then
    hygiene_last "$first_dir"
  fi
}

names=()
if (($# > 0)); then
  for dir in "$@"; do
    names+=("$(basename "$dir")")
  done
  for dir in "${@:2}"; do
    role=other
    [[ $dir == "${!#}" ]] && role=last
    lane "$(basename "$dir")" build_lane "$dir" "$1" "$role" >"$lanes/$(basename "$dir").out" 2>&1 &
  done
  role=first
  (($# == 1)) && role="first last"
  # shellcheck disable=SC2086 # role is one or two words
  lane "$(basename "$1")" build_lane "$1" "$1" $role # the first lane prints as it goes
  wait
fi
for name in "${names[@]:1}"; do
  cat "$lanes/$name.out"
done
for name in "${names[@]}"; do
  if [[ -f $lanes/$name.sum ]]; then
    read -r p f <"$lanes/$name.sum"
    passed=$((passed + p)) failed=$((failed + f))
    [[ -f $lanes/$name.broken ]] && mapfile -t -O "${#broken[@]}" broken <"$lanes/$name.broken"
  else
    failed=$((failed + 1)) broken+=("$name (lane ended without counts)")
  fi
  cat "$lanes/$name.details" >>"$details" 2>/dev/null
  cat "$lanes/$name.openapi.jsonl" >>"$BOXOFFICE_TEST_OPENAPI_LOG" 2>/dev/null
done
if ((${#names[@]})); then
  # every response the HTTP suites recorded, against docs/openapi.yaml
  run_summary openapi tests/openapi/run.sh "$BOXOFFICE_TEST_OPENAPI_LOG"
fi

if ((${#broken[@]})); then
  cut -c1-400 "$details"
  echo "failed suites: ${broken[*]}"
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
