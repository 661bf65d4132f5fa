#!/bin/bash
# stop-slurm.sh - stop the SLURM daemons that start-slurm.sh started, by the PID
# files it keeps in /run/corral-rig/slurm (never by process name). Daemons that
# were already running when start-slurm.sh ran (started by something else) have
# no PID file there and are left alone.
#   --keep-base   stop only slurmctld/slurmd/slurmdbd; leave munged and MariaDB up
#   --keep-jobs   do not scancel queued/running jobs first
set -uo pipefail
RIG_TAG=slurm
. "$(dirname "$0")/lib.sh"
RIG=/run/corral-rig
RUN=$RIG/slurm
KEEP_BASE=0; KEEP_JOBS=0
for a in "$@"; do
  case "$a" in
    --keep-base) KEEP_BASE=1;;
    --keep-jobs) KEEP_JOBS=1;;
    -h|--help) sed -n '2,7p' "$0"; exit 0;;
    *) echo "stop-slurm.sh: unknown option $a" >&2; exit 2;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "stop-slurm.sh: must run as root" >&2; exit 1; }

stopped=0
stop_one() { # command-name: stop the process in $RUN/<name>.pid if it is still that command
  if stop_pidfile "$1" "$RUN/$1.pid" 20; then stopped=$((stopped+1)); fi
}

# cancel jobs so their slurmstepd/job processes (children of our slurmd) exit
if [ $KEEP_JOBS = 0 ] && [ -s "$RUN/slurmctld.pid" ] && alive "$(cat "$RUN/slurmctld.pid")" slurmctld; then
  jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "$jobs" ]; then
    log "cancelling jobs: $jobs"
    # shellcheck disable=SC2086
    scancel $jobs 2>/dev/null
    for _ in $(seq 1 100); do [ -z "$(squeue -h -t R,CG -o %A 2>/dev/null)" ] && break; sleep 0.1; done
  fi
fi

stop_one slurmd
stop_one slurmctld
stop_one slurmdbd
if [ $KEEP_BASE = 0 ]; then
  stop_one mariadbd
  stop_one munged
fi
if [ $stopped = 0 ]; then
  log "nothing to stop (no daemon started by start-slurm.sh is running)"
fi
# drop the test environment entries unless a cluster (not ours) still answers
if [ -d "$RIG/env.d" ] && ! timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; then
  rm -f "$RIG/env.d/slurm"
  cat "$RIG"/env.d/* > "$RIG/env.tmp" 2>/dev/null; mv "$RIG/env.tmp" "$RIG/env"
fi
log "done"
