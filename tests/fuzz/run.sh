#!/usr/bin/env bash
# run.sh — builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan)
# and runs each for a set time.
#
#   tests/fuzz/run.sh [seconds] [build-dir] [--record]
#
#   seconds    per target (default 60: `make fuzz`); 10 or less is the smoke mode
#              of `make test`, which leaves the repository untouched
#   build-dir  where binaries, logs and the working corpora go (default build-fuzz)
#   --record   also rewrite the fuzz rows of docs/RELIABILITY.md from this run
#
# Each target first replays tests/fuzz/regressions/<target>/ (every crash ever
# found, minimized) and its corpus tests/fuzz/corpus/<target>/, then fuzzes.
# A target passes when all of that ran without a crash. A new crash is minimized
# and saved under tests/fuzz/regressions/<target>/ (commit it: it becomes a
# regression test). Outside the smoke mode, inputs that reach new code are
# merged into tests/fuzz/corpus/<target>/.
# Env: FUZZ_TARGETS="fuzz_body fuzz_time" limits the run; CC (default clang).
# Last line: "fuzz: N passed, M failed"; exit 0 only when M = 0.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
repo=$PWD

secs=60 build=build-fuzz record=0
pos=()
for a in "$@"; do
    case $a in
        --record) record=1 ;;
        -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
        *) pos+=("$a") ;;
    esac
done
((${#pos[@]} > 0)) && secs=${pos[0]}
((${#pos[@]} > 1)) && build=${pos[1]}
[[ $secs =~ ^[0-9]+$ && $secs -ge 1 ]] || { echo "run.sh: seconds must be a positive integer" >&2; echo "fuzz: 0 passed, 1 failed"; exit 1; }
smoke=0
((secs <= 10)) && smoke=1
mkdir -p "$build" || { echo "fuzz: 0 passed, 1 failed"; exit 1; }
build=$(cd "$build" && pwd)

CC=${CC:-clang}
CFLAGS=(-g -O1 -std=gnu11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
        -DH2O_USE_LIBUV=0 -I"$repo/src" -I"$repo/tests/fuzz" -Wall -Wextra -Wno-unused-parameter
        -Wno-missing-field-initializers)
read -r -a PKG_CFLAGS <<<"$(pkg-config --cflags jansson libsodium 2>/dev/null)"
read -r -a PKG_LIBS <<<"$(pkg-config --libs jansson libsodium 2>/dev/null || echo -ljansson -lsodium)"
read -r -a H2O_CFLAGS <<<"$(pkg-config --cflags libh2o-evloop 2>/dev/null)"

# Pure parsing code only: no h2o, store or queue is linked.
CORE=(src/http/parse.c src/http/router.c src/domain/validate.c src/domain/money.c src/domain/errors.c
      src/util/token.c src/util/clock.c)
ALL_TARGETS=(fuzz_router fuzz_body fuzz_access_token fuzz_queue_token fuzz_headers fuzz_time fuzz_validate)
read -r -a targets <<<"${FUZZ_TARGETS:-${ALL_TARGETS[*]}}"

max_len() {
    case $1 in
        fuzz_body) echo 8192 ;;
        fuzz_router) echo 512 ;;
        *) echo 256 ;;
    esac
}

build_target() { # name -> 0 when $build/bin/name is up to date
    local t=$1 out=$build/bin/$1 extra=() srcs
    srcs=("tests/fuzz/$t.c" "${CORE[@]}")
    if [[ $t == fuzz_router ]]; then
        srcs+=(src/api/routes.c tests/fuzz/stub_handlers.c)
        extra=("${H2O_CFLAGS[@]}")
    fi
    mkdir -p "$build/bin"
    if [[ -x $out ]]; then
        local newer
        newer=$( (find "${srcs[@]}" tests/fuzz/fuzz.h -newer "$out"; find src -name '*.h' -newer "$out") 2>/dev/null | head -n 1)
        [[ -z $newer ]] && return 0
    fi
    "$CC" "${CFLAGS[@]}" "${extra[@]}" "${PKG_CFLAGS[@]}" "${srcs[@]}" -o "$out" "${PKG_LIBS[@]}" \
        >"$build/logs/$t.build.log" 2>&1
}

# RELIABILITY.md rows between the fuzz markers
record_rows=()

passed=0 failed=0 broken=()
mkdir -p "$build/logs"
echo "fuzz: ${#targets[@]} targets, ${secs} s each$( ((smoke)) && echo ' (smoke)'), build in $build"
for t in "${targets[@]}"; do
    bin=$build/bin/$t
    corpus=tests/fuzz/corpus/$t
    regress=tests/fuzz/regressions/$t
    work=$build/corpus/$t
    art=$build/artifacts/$t
    log=$build/logs/$t.log
    mkdir -p "$corpus" "$work" "$art"
    if ! build_target "$t"; then
        echo "== $t: BUILD FAILED"
        sed 's/^/   | /' "$build/logs/$t.build.log" | tail -n 20
        failed=$((failed + 1)); broken+=("$t")
        record_rows+=("| fuzz \`$t\` | build failed | — | — | ✗ |")
        continue
    fi
    dict=()
    [[ -f tests/fuzz/$t.dict ]] && dict=(-dict="tests/fuzz/$t.dict")
    ml=$(max_len "$t")

    # 1. every saved crash and every corpus input, once each
    replay=()
    for f in "$regress"/* "$corpus"/*; do [[ -f $f ]] && replay+=("$f"); done
    nreg=$(find "$regress" -type f 2>/dev/null | wc -l)
    if ((${#replay[@]} > 0)); then
        if ! "$bin" -runs=1 "${replay[@]}" >"$log.replay" 2>&1 \
           && ! printf '%s\0' "${replay[@]}" | xargs -0 -n 200 "$bin" -runs=1 >"$log.replay" 2>&1; then
            echo "== $t: FAILED replaying saved inputs ($nreg regressions, corpus)"
            grep -a -E 'ERROR|invariant|Running:|runtime error' "$log.replay" | tail -n 12 | sed 's/^/   | /'
            failed=$((failed + 1)); broken+=("$t")
            record_rows+=("| fuzz \`$t\` | replay of $nreg regressions + corpus | — | — | ✗ regression |")
            continue
        fi
    fi

    # 2. fuzz; new inputs go to the working corpus, the repo corpus is read
    rm -f "$art"/*
    start=$(date +%s)
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len="$ml" -print_final_stats=1 \
        -artifact_prefix="$art/" "${dict[@]}" "$work" "$corpus" >"$log" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    runs=$(grep -a -E '^stat::number_of_executed_units:' "$log" | tail -n 1 | awk '{print $2}')
    eps=$(grep -a -E '^stat::average_exec_per_sec:' "$log" | tail -n 1 | awk '{print $2}')
    cov=$(grep -a -oE 'cov: [0-9]+' "$log" | tail -n 1 | awk '{print $2}')
    runs=${runs:-?} eps=${eps:-?} cov=${cov:-?}
    crashes=()
    for f in "$art"/*; do [[ -f $f ]] && crashes+=("$f"); done
    if ((rc == 0 && ${#crashes[@]} == 0)); then
        passed=$((passed + 1))
        echo "== $t: ok, $runs runs in ${took} s ($eps/s), coverage $cov, $nreg regressions replayed"
        if ((!smoke)); then
            before=$(find "$corpus" -type f | wc -l)
            "$bin" -merge=1 -max_len="$ml" "$corpus" "$work" >"$log.merge" 2>&1
            after=$(find "$corpus" -type f | wc -l)
            echo "   corpus $corpus: $before -> $after inputs"
        fi
        record_rows+=("| fuzz \`$t\` | $runs runs in ${took} s ($eps exec/s), coverage $cov | $(date -u +%F) | $nreg regressions replayed | ✓ no crash |")
        continue
    fi
    failed=$((failed + 1)); broken+=("$t")
    echo "== $t: CRASH (exit $rc) after $runs runs"
    grep -a -E 'ERROR: |invariant failed|runtime error|SUMMARY' "$log" | head -n 8 | sed 's/^/   | /'
    mkdir -p "$regress"
    for f in "${crashes[@]}"; do
        name=$(basename "$f")
        kind=${name%%-*}
        dest=$regress/$name
        if [[ $kind == crash ]]; then
            "$bin" -minimize_crash=1 -max_total_time=30 -runs=100000 -exact_artifact_path="$dest.min" "$f" \
                >"$log.minimize" 2>&1
        fi
        if [[ -s $dest.min ]]; then mv "$dest.min" "$dest"; else rm -f "$dest.min"; cp "$f" "$dest"; fi
        echo "   saved $dest ($(stat -c %s "$dest") bytes): replay with $bin $dest"
    done
    record_rows+=("| fuzz \`$t\` | $runs runs in ${took} s | $(date -u +%F) | crash saved under $regress | ✗ crash |")
done

if ((record)); then
    doc=docs/RELIABILITY.md
    if [[ -f $doc ]] && grep -q '<!-- fuzz:begin -->' "$doc"; then
        tmp=$(mktemp)
        {
            sed '/<!-- fuzz:begin -->/q' "$doc"
            printf '%s\n' "${record_rows[@]}"
            sed -n '/<!-- fuzz:end -->/,$p' "$doc"
        } >"$tmp" && cat "$tmp" >"$doc"
        rm -f "$tmp"
        echo "recorded in $doc"
    else
        echo "no <!-- fuzz:begin --> marker in $doc: nothing recorded"
    fi
fi

((${#broken[@]})) && echo "failed targets: ${broken[*]}"
echo "fuzz: $passed passed, $failed failed"
((failed == 0))
