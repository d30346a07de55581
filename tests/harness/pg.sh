#!/usr/bin/env bash
# pg.sh — a throwaway PostgreSQL server for tests (scale-out mode, CONTRACT §2).
#
#   pg.sh start DIR   initdb into DIR/pgdata on first use, start the server on
#                     127.0.0.1 and a free random port (kept in DIR/port, so a
#                     restart comes back on the same port), unix socket in DIR/sock,
#                     trust auth on loopback, fsync=on. Prints exactly one line on
#                     stdout: postgresql://postgres@127.0.0.1:PORT/postgres
#   pg.sh stop DIR    pg_ctl stop -m fast (thawing it first if frozen); removes nothing.
#   pg.sh freeze DIR  SIGSTOPs the postmaster, then every process it has forked
#                     (backends, checkpointer, WAL writer...): a hung host, or a
#                     partition whose kernel still ACKs. Their pids go to DIR/frozen.pids.
#   pg.sh thaw DIR    SIGCONTs every process of DIR/frozen.pids, then removes it.
#
# As root the server runs as user `postgres` (PostgreSQL refuses to run as root)
# and DIR is handed to that user. Everything else goes to stderr; the server log
# is DIR/postgres.log.
set -euo pipefail

die() {
    echo "pg.sh: $*" >&2
    exit 1
}

usage() {
    echo "usage: pg.sh start|stop|freeze|thaw DIR" >&2
    exit 2
}

# The directory holding initdb, pg_ctl and postgres: pg_config's answer when it
# has them, else the newest /usr/lib/postgresql/*/bin (Debian's layout).
find_bindir() {
    local dir candidate
    if command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir 2>/dev/null || true)
        if [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]]; then
            echo "$dir"
            return 0
        fi
    fi
    dir=""
    for candidate in /usr/lib/postgresql/*/bin; do
        if [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then
            dir=$candidate
        fi
    done
    [[ -n "$dir" ]] || die "no PostgreSQL server binaries found (install the postgresql package)"
    echo "$dir"
}

# Runs a command as the server's owner: `postgres` when we are root, else ourselves.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Ports below the kernel's ephemeral range (32768.. on Linux), so an outgoing
# connection's port is never picked; a listener there is seen by port_in_use.
port_in_use() {
    # A successful connect means something listens there.
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
    local port tries=0
    while ((tries < 200)); do
        port=$((15000 + RANDOM % 17000))
        if ! port_in_use "$port"; then
            echo "$port"
            return 0
        fi
        tries=$((tries + 1))
    done
    die "no free port found"
}

# As root: lets user postgres reach dir, granting search permission (only that)
# on each ancestor it cannot pass — e.g. a 0700 directory from mktemp -d.
grant_traverse() {
    local dir=$1 path="" part
    local -a parts
    IFS=/ read -r -a parts <<<"${dir#/}"
    for part in "${parts[@]}"; do
        path="$path/$part"
        [[ "$path" == "$dir" ]] && break
        if ! runuser -u postgres -- test -x "$path"; then
            if ! { command -v setfacl >/dev/null 2>&1 && setfacl -m u:postgres:x "$path" 2>/dev/null; }; then
                chmod o+x "$path"
            fi
            echo "pg.sh: granted user postgres search permission on $path" >&2
        fi
    done
}

cmd_start() {
    local dir=$1 bindir data port attempt
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    data=$dir/pgdata
    bindir=$(find_bindir)

    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs a 'postgres' user"
        chown -R postgres: "$dir"
        grant_traverse "$dir"
        runuser -u postgres -- test -x "$dir" || die "user postgres cannot reach $dir (choose a directory under /tmp)"
    fi

    if [[ ! -f "$data/PG_VERSION" ]]; then
        as_owner "$bindir/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=trust \
            -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2
            die "initdb failed"
        }
        as_owner mkdir -p "$dir/sock"
        as_owner tee -a "$data/postgresql.conf" >/dev/null <<EOF
# --- tests/harness/pg.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 200
log_min_messages = warning
EOF
    fi

    if [[ -f "$data/postmaster.pid" ]] && as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        port=$(cat "$dir/port")
        echo "postgresql://postgres@127.0.0.1:$port/postgres"
        return 0
    fi

    for attempt in 1 2 3 4 5; do
        if [[ -f "$dir/port" ]]; then
            port=$(cat "$dir/port")
        else
            port=$(pick_port)
        fi
        if as_owner "$bindir/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 -o "-p $port" start >&2; then
            as_owner tee "$dir/port" >/dev/null <<<"$port"
            echo "postgresql://postgres@127.0.0.1:$port/postgres"
            return 0
        fi
        echo "pg.sh: start on port $port failed (attempt $attempt)" >&2
        tail -n 5 "$dir/postgres.log" >&2 || true
        # A port taken since we picked it: pick another. A port remembered from
        # an earlier run is kept for restarts unless it is plainly taken.
        if [[ -f "$dir/port" ]] && port_in_use "$port"; then
            rm -f "$dir/port"
        fi
        sleep 1
    done
    die "PostgreSQL did not start; see $dir/postgres.log"
}

# The postmaster first, so that it forks nothing after its children were listed.
cmd_freeze() {
    local dir=$1 pm kids
    [[ -f "$dir/pgdata/postmaster.pid" ]] || die "not running ($dir/pgdata)"
    [[ -f "$dir/frozen.pids" ]] && die "already frozen ($dir/frozen.pids)"
    pm=$(head -1 "$dir/pgdata/postmaster.pid")
    [[ $pm =~ ^[0-9]+$ ]] || die "no postmaster pid in $dir/pgdata/postmaster.pid"
    kill -STOP "$pm"
    kids=$(pgrep -P "$pm" | tr '\n' ' ')
    echo "$pm $kids" >"$dir/frozen.pids"
    # shellcheck disable=SC2086
    [[ -z $kids ]] || kill -STOP $kids
}

cmd_thaw() {
    local dir=$1
    [[ -f "$dir/frozen.pids" ]] || return 0
    # shellcheck disable=SC2046
    kill -CONT $(cat "$dir/frozen.pids") 2>/dev/null || true
    rm -f "$dir/frozen.pids"
}

cmd_stop() {
    local dir=$1 bindir data
    [[ -d "$dir" ]] || die "no such directory: $dir"
    dir=$(cd "$dir" && pwd -P)
    data=$dir/pgdata
    cmd_thaw "$dir" # a frozen server would never stop
    bindir=$(find_bindir)
    if [[ ! -f "$data/postmaster.pid" ]]; then
        echo "pg.sh: not running ($data)" >&2
        return 0
    fi
    as_owner "$bindir/pg_ctl" -D "$data" -m fast -w -t 60 stop >&2
}

[[ $# -eq 2 ]] || usage
case "$1" in
start) cmd_start "$2" ;;
stop) cmd_stop "$2" ;;
freeze) cmd_freeze "$2" ;;
thaw) cmd_thaw "$2" ;;
*) usage ;;
esac
