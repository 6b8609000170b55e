#!/usr/bin/env bash
# A throwaway PostgreSQL on 127.0.0.1, for shared Optuna storage in tests and demos.
#
#   scripts/postgres-local.sh start    # initdb + start; the LAST LINE printed is the storage URL
#   scripts/postgres-local.sh status   # exit 0 when it accepts connections (prints the URL too)
#   scripts/postgres-local.sh stop     # stop the server and delete its data
#
#   STORAGE=$(scripts/postgres-local.sh start | tail -1)
#   makemore-train sweep=beat_2p2 hydra.sweeper.storage="$STORAGE"
#
# Needs the Debian package postgresql (scripts/install-services.sh postgres). Everything lives in
# $PG_LOCAL_DIR (default /tmp/makemore-postgres). The server listens on 127.0.0.1 only, on the
# first free port from $PG_LOCAL_PORT (default 55432), with one user and a random password.
# It is tuned for speed, not durability (fsync off): never keep anything of value in it.
set -euo pipefail

STATE_DIR=${PG_LOCAL_DIR:-${TMPDIR:-/tmp}/makemore-postgres}
DATA=$STATE_DIR/data
DB_USER=makemore
DB_NAME=optuna

die() { echo "postgres-local: $*" >&2; exit 1; }
say() { echo "postgres-local: $*"; }

pg_bin() {  # the directory of initdb/pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/N/bin
    local found
    if found=$(command -v pg_ctl 2>/dev/null); then dirname "$(readlink -f "$found")"; return; fi
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [[ -n $found && -x $found/pg_ctl ]] ||
        die "PostgreSQL is not installed: install it with sudo scripts/install-services.sh postgres."
    echo "$found"
}

as_owner() {  # run a command as the server's owner: PostgreSQL refuses to run as root
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs the system user 'postgres' (Debian's postgresql package creates it)."
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local port=$1
    while ! port_free "$port"; do port=$((port + 1)); done
    echo "$port"
}

storage_url() {
    echo "postgresql+psycopg2://$DB_USER:$(cat "$STATE_DIR/password")@127.0.0.1:$(cat "$STATE_DIR/port")/$DB_NAME"
}

running() {
    [[ -f $DATA/PG_VERSION && -f $STATE_DIR/port ]] &&
        as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

initialise() {
    mkdir -p "$STATE_DIR"
    chmod 0755 "$STATE_DIR"
    [[ -s $STATE_DIR/password ]] || (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' 'xy' >"$STATE_DIR/password")
    free_port "${PG_LOCAL_PORT:-55432}" >"$STATE_DIR/port"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$STATE_DIR" "$STATE_DIR/password"; fi
    as_owner "$BIN/initdb" --pgdata="$DATA" --username="$DB_USER" --pwfile="$STATE_DIR/password" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-instructions >"$STATE_DIR/initdb.log"
}

start() {
    BIN=$(pg_bin)
    if running; then
        say "already running on 127.0.0.1:$(cat "$STATE_DIR/port") (data in $DATA)"
        storage_url
        return
    fi
    [[ -f $DATA/PG_VERSION ]] || initialise
    local port
    port=$(cat "$STATE_DIR/port")
    port_free "$port" || { port=$(free_port "$port"); echo "$port" >"$STATE_DIR/port"; }
    # Throwaway settings: TCP on 127.0.0.1 only, the socket in our folder, no durability.
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$STATE_DIR/server.log" -w -t 30 start -o \
        "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$STATE_DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        >/dev/null || die "the server did not start; see $STATE_DIR/server.log"
    if ! as_owner "$BIN/psql" -h "$STATE_DIR" -p "$port" -U "$DB_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'" | grep -q 1; then
        as_owner "$BIN/createdb" -h "$STATE_DIR" -p "$port" -U "$DB_USER" "$DB_NAME"
    fi
    say "running on 127.0.0.1:$port (data in $DATA); storage URL:"
    storage_url
}

stop() {
    BIN=$(pg_bin)
    if running; then as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; fi
    rm -rf "$STATE_DIR"
    say "stopped"
}

status() {
    BIN=$(pg_bin)
    if running; then
        say "running on 127.0.0.1:$(cat "$STATE_DIR/port") (data in $DATA)"
        storage_url
    else
        say "not running"
        return 1
    fi
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
