#!/bin/bash
# stop-sshd.sh - stop the test sshd that start-sshd.sh started (PID file
# /run/corral-rig/sshd/sshd.pid; never by process name). Sessions already open
# end on their own. The system sshd is not touched.
#   --clean   also delete the host key, the client key pair and known_hosts
set -uo pipefail
RIG_TAG=sshd
. "$(dirname "$0")/lib.sh"
RIG=/run/corral-rig
DIR=$RIG/sshd
CLI=$RIG/ssh
CLEAN=0
for a in "$@"; do
  case "$a" in
    --clean) CLEAN=1;;
    -h|--help) sed -n '2,5p' "$0"; exit 0;;
    *) echo "stop-sshd.sh: unknown option $a" >&2; exit 2;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "stop-sshd.sh: must run as root" >&2; exit 1; }

stop_pidfile sshd "$DIR/sshd.pid" 10 \
  || log "nothing to stop (no sshd started by start-sshd.sh is running)"
if [ $CLEAN = 1 ]; then
  rm -rf "$DIR" "$CLI"
  log "removed $DIR and $CLI"
fi
if [ -d "$RIG/env.d" ]; then
  rm -f "$RIG/env.d/ssh"
  cat "$RIG"/env.d/* > "$RIG/env.tmp" 2>/dev/null; mv "$RIG/env.tmp" "$RIG/env"
fi
log "done"
