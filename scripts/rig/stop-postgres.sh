#!/bin/bash
# stop-postgres.sh - stop the PostgreSQL cluster that start-postgres.sh started
# (fast shutdown: open sessions are disconnected). A cluster that was already
# online when start-postgres.sh ran is left alone. Data (role corral, database
# corral_test) is kept.
#   --drop-db   also drop the database corral_test and the role corral
#               (done before stopping, also when the cluster is not ours)
set -uo pipefail
RIG_TAG=pg
. "$(dirname "$0")/lib.sh"
RIG=/run/corral-rig
RUN=$RIG/postgres
DROP=0
for a in "$@"; do
  case "$a" in
    --drop-db) DROP=1;;
    -h|--help) sed -n '2,7p' "$0"; exit 0;;
    *) echo "stop-postgres.sh: unknown option $a" >&2; exit 2;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "stop-postgres.sh: must run as root" >&2; exit 1; }

if [ $DROP = 1 ]; then
  url=$(sed -n 's/^CORRAL_TEST_PG_URL=//p' "$RIG/env.d/postgres" 2>/dev/null)
  port=${url##*:}; port=${port%%/*}; port=${port:-5432}
  runuser -u postgres -- psql -X -q -h /var/run/postgresql -p "$port" -d postgres \
    -c 'DROP DATABASE IF EXISTS corral_test WITH (FORCE)' -c 'DROP ROLE IF EXISTS corral' \
    && log "dropped database corral_test and role corral"
fi

stopped=0
if [ -s "$RUN/postgres.pid" ] && [ -s "$RUN/cluster" ]; then
  pid=$(cat "$RUN/postgres.pid"); read -r ver name < "$RUN/cluster"
  # the postmaster's command name is "postgres"
  if alive "$pid" postgres; then
    pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" stop -m fast \
      && { log "stopped cluster $ver/$name (postmaster pid $pid)"; stopped=1; }
  fi
  rm -f "$RUN/postgres.pid" "$RUN/cluster"
fi
[ $stopped = 1 ] || log "nothing to stop (no cluster started by start-postgres.sh is running)"
if [ -d "$RIG/env.d" ] && { [ $stopped = 1 ] || [ $DROP = 1 ]; }; then
  rm -f "$RIG/env.d/postgres"
  cat "$RIG"/env.d/* > "$RIG/env.tmp" 2>/dev/null; mv "$RIG/env.tmp" "$RIG/env"
fi
log "done"
