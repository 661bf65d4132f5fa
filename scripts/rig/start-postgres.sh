#!/bin/bash
# start-postgres.sh - install Debian's PostgreSQL (if missing) and run a cluster
# for Corral's tests: TCP on 127.0.0.1 only (plus the unix socket in
# /var/run/postgresql), role `corral` (password `corral`, CREATEDB) owning the
# database `corral_test`. Run as root; no systemd needed (pg_ctlcluster runs the
# postmaster as the postgres user).
#
# Uses the cluster on port 5432 (the Debian default, 15/main), else the first
# existing cluster, else creates one. Idempotent: a cluster that is already
# online is not restarted; the role and database are created only if missing.
# Prints the SQLAlchemy URL, e.g.
#   postgresql+psycopg://corral:corral@127.0.0.1:5432/corral_test
#
# Knobs (environment):
#   CORRAL_RIG_PG_PORT=5432     port of the cluster to use / create
#   CORRAL_RIG_PG_TIMEOUT=60    seconds to wait for the server to accept connections
set -euo pipefail
RIG_TAG=pg
. "$(dirname "$0")/lib.sh"

die()  { log "ERROR: $*"; [ -n "${PGLOG:-}" ] && [ -f "$PGLOG" ] && tail -n 15 "$PGLOG"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "start-postgres.sh: must run as root" >&2; exit 1; }

WANT_PORT=${CORRAL_RIG_PG_PORT:-5432}
TIMEOUT=${CORRAL_RIG_PG_TIMEOUT:-60}
RIG=/run/corral-rig
RUN=$RIG/postgres
SOCKDIR=/var/run/postgresql
DB_USER=corral
DB_PASS=corral
DB_NAME=corral_test
CONF_NAME=corral-rig.conf

# from / : the postgres user may not be able to enter the caller's directory (e.g. a clone under /root)
as_pg() { (cd / && runuser -u postgres -- "$@"); }
psql_pg() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" -p "$PORT" -d postgres "$@"; }

# ---------------------------------------------------------------- install
PKGS=(postgresql postgresql-client)
mapfile -t MISSING < <(missing_packages "${PKGS[@]}")
if [ ${#MISSING[@]} -gt 0 ]; then
  apt_install /tmp/corral-rig-pg-apt.log "${MISSING[@]}"
fi

# ---------------------------------------------------------------- pick (or create) the cluster
# pg_lsclusters -h: version cluster port status owner datadir logfile
CLUSTERS=$(pg_lsclusters -h 2>/dev/null || true)
LINE=$(awk -v p="$WANT_PORT" '$3==p' <<<"$CLUSTERS" | head -1)
[ -n "$LINE" ] || LINE=$(head -1 <<<"$CLUSTERS")
if [ -z "$LINE" ]; then
  VER=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -1)
  [ -n "$VER" ] || die "no PostgreSQL server version found in /usr/lib/postgresql"
  log "creating cluster $VER/main on port $WANT_PORT"
  pg_createcluster --port "$WANT_PORT" "$VER" main >/dev/null || die "pg_createcluster failed"
  LINE=$(pg_lsclusters -h | awk -v p="$WANT_PORT" '$3==p' | head -1)
fi
read -r VER NAME PORT _ _ _ PGLOG <<<"$LINE"
CONFDIR=/etc/postgresql/$VER/$NAME
[ "$PORT" = "$WANT_PORT" ] || log "note: using cluster $VER/$NAME on port $PORT (none on $WANT_PORT)"

# TCP on loopback IPv4 only; the unix socket stays in $SOCKDIR
mkdir -p "$CONFDIR/conf.d"
CONF="# written by Corral's scripts/rig/start-postgres.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCKDIR'
"
CONF_CHANGED=0
if [ "$(cat "$CONFDIR/conf.d/$CONF_NAME" 2>/dev/null || true)" != "${CONF%$'\n'}" ]; then
  printf '%s' "$CONF" > "$CONFDIR/conf.d/$CONF_NAME"
  chown postgres:postgres "$CONFDIR/conf.d/$CONF_NAME"
  CONF_CHANGED=1
fi
install -d -o postgres -g postgres -m 2775 "$SOCKDIR"
mkdir -p "$RUN"

# ---------------------------------------------------------------- server
online() { pg_lsclusters -h "$VER" "$NAME" 2>/dev/null | awk '{print $4}' | grep -qx online; }
ready()  { as_pg pg_isready -q -h "$SOCKDIR" -p "$PORT"; }
if online; then
  log "cluster $VER/$NAME already online on port $PORT"
  if [ $CONF_CHANGED = 1 ]; then
    log "note: wrote $CONFDIR/conf.d/$CONF_NAME; listen_addresses takes effect at the next restart"
  fi
else
  log "starting cluster $VER/$NAME on port $PORT"
  pg_ctlcluster --skip-systemctl-redirect "$VER" "$NAME" start || die "pg_ctlcluster start failed"
  PIDFILE=$(pg_lsclusters -h "$VER" "$NAME" | awk '{print $6}')/postmaster.pid
  wait_for 10 "postmaster.pid" test -s "$PIDFILE"
  head -1 "$PIDFILE" > "$RUN/postgres.pid"
  echo "$VER $NAME" > "$RUN/cluster"
  log "cluster started (postmaster pid $(cat "$RUN/postgres.pid"))"
fi
wait_for "$TIMEOUT" "PostgreSQL to accept connections" ready

# ---------------------------------------------------------------- role and database
if [ "$(psql_pg -Atc "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" != 1 ]; then
  psql_pg -c "CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASS'" >/dev/null
  log "created role $DB_USER"
else   # make sure it can log in with the known password
  psql_pg -c "ALTER ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASS'" >/dev/null
fi
if [ "$(psql_pg -Atc "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
  psql_pg -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" >/dev/null
  log "created database $DB_NAME owned by $DB_USER"
else
  psql_pg -c "ALTER DATABASE $DB_NAME OWNER TO $DB_USER" >/dev/null
fi

# the URL must work over TCP with the password (pg_hba: host ... 127.0.0.1/32 scram-sha-256)
got=$(PGPASSWORD=$DB_PASS PGCONNECT_TIMEOUT=10 psql -X -Atq -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -d "$DB_NAME" \
        -c 'SELECT current_user' 2>&1) \
  || die "password login as $DB_USER over 127.0.0.1:$PORT failed: $got (check $CONFDIR/pg_hba.conf)"
[ "$got" = "$DB_USER" ] || die "unexpected answer from the server: $got"
LISTEN=$(psql_pg -Atc 'SHOW listen_addresses')
[ "$LISTEN" = 127.0.0.1 ] || log "WARNING: listen_addresses is '$LISTEN' (restart the cluster to apply 127.0.0.1)"

URL="postgresql+psycopg://$DB_USER:$DB_PASS@127.0.0.1:$PORT/$DB_NAME"
mkdir -p "$RIG/env.d"
printf 'CORRAL_TEST_PG_URL=%s\n' "$URL" > "$RIG/env.d/postgres"
cat "$RIG"/env.d/* > "$RIG/env.tmp" && mv "$RIG/env.tmp" "$RIG/env"
log "PostgreSQL $VER/$NAME ready in $(since "$T_START")s (listen $LISTEN:$PORT, socket $SOCKDIR)"
echo "CORRAL_TEST_PG_URL=$URL"
