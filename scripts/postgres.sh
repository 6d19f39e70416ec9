#!/usr/bin/env bash
# A PostgreSQL cluster of the project's own on 127.0.0.1, from Debian's postgresql
# package (installed with apt-get when missing, as root). Data lives under
# .cache/postgres. Run as root, the cluster runs as the postgres user; run as anyone
# else, it runs as that user (initdb and pg_ctl need no privileges).
#
# wal_level=logical, and role cronstream has REPLICATION: a Debezium connector can
# capture changes from it (tests/integration/test_debezium.py).
# Auth: password (scram-sha-256) over TCP for role cronstream / password cronstream.
# The Unix socket is private: its folder is the cluster owner's alone (mode 700) and it
# takes peer authentication, where only the OS user running the cluster and root may
# log in (as postgres or cronstream; `psql` below uses it: no password). Every start
# writes these settings, so a cluster made by an older version (which trusted every
# local user) gets them too.
#
# usage: scripts/postgres.sh up|down|status|psql [psql options]
# env:   CRONSTREAM_PG_PORT (5432), CRONSTREAM_PG_PASSWORD (cronstream),
#        CRONSTREAM_PG_BIN (folder of initdb and pg_ctl; default: the newest
#        /usr/lib/postgresql/*/bin, else pg_ctl's folder on PATH), CRONSTREAM_CACHE_DIR (.cache)
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# runuser lives in sbin, which a root shell (su, sudo -s) may leave off PATH.
PATH="$PATH:/usr/sbin:/sbin"
PORT="${CRONSTREAM_PG_PORT:-5432}"
PASSWORD="${CRONSTREAM_PG_PASSWORD:-cronstream}"
HOME_DIR="$CACHE/postgres"

# place: where the cluster lives. Under .cache/postgres, unless we are root and the
# postgres user cannot reach it (a clone in a mode-700 home directory): then in the
# postgres user's own home, one folder per clone, with .cache/postgres/data-PORT a
# symlink to it.
place() {
  CLUSTER="$HOME_DIR"
  if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1 \
      && ! runuser -u postgres -- test -x "$HOME_DIR" 2>/dev/null; then
    CLUSTER="$(getent passwd postgres | cut -d: -f6)/cronstream-$(printf %s "$ROOT" | sha256sum | cut -c1-12)"
  fi
  DATA="$CLUSTER/data-$PORT"
  RUN="$CLUSTER/run-$PORT"
  LOG="$CLUSTER/postgres-$PORT.log"
}
mkdir -p "$HOME_DIR"
place

bin_dir() {
  if [ -n "${CRONSTREAM_PG_BIN:-}" ]; then
    echo "$CRONSTREAM_PG_BIN"
  elif ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
    ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1
  elif command -v pg_ctl >/dev/null; then
    dirname "$(command -v pg_ctl)"
  fi
}

install_postgres() {
  if [ -n "${CRONSTREAM_PG_BIN:-}" ]; then
    [ -x "$CRONSTREAM_PG_BIN/pg_ctl" ] && [ -x "$CRONSTREAM_PG_BIN/initdb" ] \
      || die "CRONSTREAM_PG_BIN=$CRONSTREAM_PG_BIN has no initdb and pg_ctl: point it at the folder that has them, or unset it"
    return 0
  fi
  [ -n "$(bin_dir)" ] && return 0
  # Without root, no package: one line on both ways forward.
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    || die "PostgreSQL server not found: install postgresql (sudo apt-get install postgresql), or set CRONSTREAM_DATABASE_URL to an existing server"
  say "postgres: installing Debian's postgresql package"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
      >"$CACHE/apt-postgresql.log" 2>&1 \
    || die "apt-get install postgresql failed (see $CACHE/apt-postgresql.log)"
  # The package starts a default cluster on 5432; ours is the one we manage.
  local version
  version=$(basename "$(dirname "$(bin_dir)")")
  pg_ctlcluster "$version" main stop 2>/dev/null || true
}

# as_owner CMD...: run as the cluster's owner (initdb refuses root).
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    # From /: the postgres user may not be allowed into the current directory.
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

pg() {
  as_owner "$(bin_dir)/$1" "${@:2}"
}

psql_super() {
  as_owner "$(bin_dir)/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -U postgres -d postgres "$@"
}

# client ARGS...: psql as role cronstream over the private socket, so no password is
# asked for or shown (`make psql`).
client() {
  running || die "postgres is not running on 127.0.0.1:$PORT: start it with 'make services'"
  exec "$(bin_dir)/psql" -h "$RUN" -p "$PORT" -U cronstream -d cronstream "$@"
}

# private: pg_hba.conf and pg_ident.conf as the header says, and the socket folder
# closed to everyone but the owner (and root).
private() {
  local owner
  owner=$(as_owner id -un 2>/dev/null) \
    || die "user id $(as_owner id -u) has no name in /etc/passwd, which peer authentication on the socket needs: add one, or set CRONSTREAM_DATABASE_URL to an existing server"
  as_owner tee "$DATA/pg_hba.conf" >/dev/null <<EOF
# Written by scripts/postgres.sh on every start: edits here are lost.
local all         all                peer map=cronstream
host  all         all   127.0.0.1/32 scram-sha-256
host  replication all   127.0.0.1/32 scram-sha-256
EOF
  as_owner tee "$DATA/pg_ident.conf" >/dev/null <<EOF
# Written by scripts/postgres.sh on every start: who may log in over the socket.
cronstream "$owner" postgres
cronstream "$owner" cronstream
cronstream root postgres
cronstream root cronstream
EOF
  chmod 700 "$RUN"
}

running() {
  [ -n "$(bin_dir)" ] && [ -d "$DATA" ] && pg pg_ctl -D "$DATA" status >/dev/null 2>&1
}

up() {
  install_postgres
  if running; then
    say "postgres: already running (127.0.0.1:$PORT)"
    private
    pg pg_ctl -D "$DATA" reload >/dev/null
    [ "$(psql_super -tA -c 'SHOW wal_level')" = logical ] \
      || say "postgres: warning: it runs without wal_level=logical (started by an older version of this script), which Debezium needs: restart it with 'scripts/services.sh down postgres' and 'make services'"
    return 0
  fi
  port_open "$PORT" && die "port $PORT is taken by another process: stop it, set CRONSTREAM_PG_PORT to a free port, or point CRONSTREAM_DATABASE_URL at that server"
  place  # again: the postgres user may have been created just now
  mkdir -p "$CLUSTER" "$RUN"
  [ "$(id -u)" = 0 ] && chown postgres: "$CLUSTER" "$RUN"
  [ "$CLUSTER" = "$HOME_DIR" ] || ln -sfn "$DATA" "$HOME_DIR/data-$PORT"
  if [ ! -s "$DATA/PG_VERSION" ]; then
    say "postgres: creating a cluster in $DATA"
    pg initdb -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >"$HOME_DIR/initdb-$PORT.log" 2>&1 \
      || die "initdb failed (see $HOME_DIR/initdb-$PORT.log)"
  fi
  private
  pg pg_ctl -D "$DATA" -l "$LOG" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $PORT -k $RUN -c unix_socket_permissions=0700 -c max_connections=200 -c wal_level=logical" \
      start >/dev/null \
    || { tail -n 20 "$LOG" >&2; die "postgres did not start (see $LOG)"; }
  psql_super <<SQL
SELECT 'CREATE ROLE cronstream LOGIN CREATEDB'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cronstream') \gexec
ALTER ROLE cronstream PASSWORD '$PASSWORD' REPLICATION;
SELECT 'CREATE DATABASE cronstream OWNER cronstream'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'cronstream') \gexec
SQL
  say "postgres: ready on 127.0.0.1:$PORT (postgresql://cronstream:***@127.0.0.1:$PORT/cronstream)"
}

down() {
  if running; then
    pg pg_ctl -D "$DATA" -m fast -w -t 60 stop >/dev/null
    say "postgres: stopped"
  else
    say "postgres: not running"
  fi
}

status() {
  if running; then
    echo "postgres: running (127.0.0.1:$PORT, data $DATA)"
  else
    echo "postgres: stopped"
    return 1
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  psql) client "${@:2}" ;;
  *) die "usage: scripts/postgres.sh up|down|status|psql [psql options]" ;;
esac
