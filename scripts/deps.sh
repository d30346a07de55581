#!/usr/bin/env bash
# deps.sh — makes sure the Debian 12 packages boxoffice needs are installed.
#
#   scripts/deps.sh run    build and run the server (default)
#   scripts/deps.sh test   everything `make test` needs (run + test tools)
#
# As root, installs what is missing with apt-get (apt-get update only when
# something is missing). Otherwise prints the missing packages and the command
# to install them, and exits 1. Prints one line when everything is present.
set -euo pipefail

RUN_PKGS=(
    gcc make meson ninja-build pkg-config
    libh2o-evloop-dev libssl-dev libsqlite3-dev libjansson-dev libsodium-dev
    libpq-dev libhiredis-dev curl
)
# "a|b": either package satisfies the need; the first is installed if none is.
TEST_PKGS=(
    libcriterion-dev libcurl4-openssl-dev jq
    redis-server postgresql "nginx-light|nginx"
    chromium chromium-driver
    wrk valgrind cppcheck clang clang-tidy libclang-rt-14-dev sqlite3 gnuplot-nox python3
    strace systemd
)

usage() {
    echo "usage: $0 [run|test]" >&2
    exit 2
}

profile=${1:-run}
case $profile in
    run) wanted=("${RUN_PKGS[@]}") ;;
    test) wanted=("${RUN_PKGS[@]}" "${TEST_PKGS[@]}") ;;
    -h | --help) usage ;;
    *) usage ;;
esac

installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

missing=()
for want in "${wanted[@]}"; do
    IFS='|' read -r -a alternatives <<<"$want"
    found=0
    for pkg in "${alternatives[@]}"; do
        if installed "$pkg"; then
            found=1
            break
        fi
    done
    if ((found == 0)); then
        missing+=("${alternatives[0]}")
    fi
done

# Browser tests run on Node.js >= 18 (built-in fetch); a machine image may bring
# its own node, else Debian's nodejs package is enough.
if [[ $profile == test ]] && ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs)
fi
# The OpenAPI check (tests/openapi) installs its pinned packages with npm ci;
# Debian ships npm apart from nodejs.
if [[ $profile == test ]] && ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
fi

if ((${#missing[@]} == 0)); then
    echo "deps: all ${#wanted[@]} packages present"
    exit 0
fi

if ((EUID != 0)); then
    echo "deps: missing packages (${profile} profile): ${missing[*]}" >&2
    echo "deps: install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q "${missing[@]}"

# Check again: apt-get can succeed without installing a package (e.g. a name
# that is only virtual).
still=()
for pkg in "${missing[@]}"; do
    installed "$pkg" || still+=("$pkg")
done
if ((${#still[@]} > 0)); then
    echo "deps: still missing after apt-get: ${still[*]}" >&2
    exit 1
fi
echo "deps: all ${#wanted[@]} packages present"
