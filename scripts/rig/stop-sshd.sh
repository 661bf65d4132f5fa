#!/bin/bash
# stop-sshd.sh - stop the test sshd that start-sshd.sh started (PID file
# /run/corral-rig/sshd/sshd.pid; never by process name). Sessions already open
# end on their own. The system sshd is not touched.
#   --clean   also delete the host key, the client key pair and known_hosts
set -uo pipefail
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
T0=$EPOCHREALTIME
log() { printf '[rig sshd  %5ss] %s\n' "$(awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')" "$*"; }
alive() { [ -n "$1" ] && [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] \
            && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]; }

if [ -s "$DIR/sshd.pid" ] && pid=$(cat "$DIR/sshd.pid") && alive "$pid" sshd; then
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do alive "$pid" sshd || break; sleep 0.1; done
  if alive "$pid" sshd; then log "sshd ($pid) ignored TERM for 10s; KILL"; kill -KILL "$pid"; fi
  log "stopped sshd (pid $pid)"
else
  log "nothing to stop (no sshd started by start-sshd.sh is running)"
fi
rm -f "$DIR/sshd.pid"
if [ $CLEAN = 1 ]; then
  rm -rf "$DIR" "$CLI"
  log "removed $DIR and $CLI"
fi
if [ -d "$RIG/env.d" ]; then
  rm -f "$RIG/env.d/ssh"
  cat "$RIG"/env.d/* > "$RIG/env.tmp" 2>/dev/null; mv "$RIG/env.tmp" "$RIG/env"
fi
log "done"
