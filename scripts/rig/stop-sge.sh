#!/bin/bash
# stop-sge.sh - stop the Grid Engine daemons that start-sge.sh started, by the
# PID files it keeps in /run/corral-rig/sge (never by process name). A cell that
# was already running when start-sge.sh ran is left alone.
#   --keep-jobs   do not qdel queued/running jobs first
set -uo pipefail
RIG_TAG=sge
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RIG=/run/corral-rig
RUN=$RIG/sge
# shellcheck source=sge-env.sh
. "$HERE/sge-env.sh"
KEEP_JOBS=0
for a in "$@"; do
  case "$a" in
    --keep-jobs) KEEP_JOBS=1;;
    -h|--help) sed -n '2,5p' "$0"; exit 0;;
    *) echo "stop-sge.sh: unknown option $a" >&2; exit 2;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "stop-sge.sh: must run as root" >&2; exit 1; }

stopped=0
stop_one() { # command-name: stop the process in $RUN/<name>.pid if it is still that command
  if stop_pidfile "$1" "$RUN/$1.pid" 30; then stopped=$((stopped+1)); fi
}

if [ $KEEP_JOBS = 0 ] && [ -s "$RUN/sge_qmaster.pid" ] && alive "$(cat "$RUN/sge_qmaster.pid")" sge_qmaster; then
  if [ -n "$(timeout 20 qstat -u '*' 2>/dev/null)" ]; then
    log "deleting all jobs"
    timeout 20 qdel -f -u '*' >/dev/null 2>&1
    for _ in $(seq 1 100); do [ -z "$(timeout 20 qstat -u '*' -s rs 2>/dev/null)" ] && break; sleep 0.1; done
  fi
fi
stop_one sge_execd
stop_one sge_qmaster
[ $stopped = 0 ] && log "nothing to stop (no daemon started by start-sge.sh is running)"
# drop the test environment entries unless a cell (not ours) still answers
if [ -d "$RIG/env.d" ] && ! timeout 10 qconf -sh >/dev/null 2>&1; then
  rm -f "$RIG/env.d/sge"
  cat "$RIG"/env.d/* > "$RIG/env.tmp" 2>/dev/null; mv "$RIG/env.tmp" "$RIG/env"
fi
log "done"
