# lib.sh - helpers shared by the rig scripts. Source it after setting RIG_TAG:
#   RIG_TAG=slurm; . "$(dirname "$0")/lib.sh"
# A script may define its own die() after sourcing (e.g. to show daemon logs).

T_START=${T_START:-$EPOCHREALTIME}
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }
log()   { printf '[rig %-5s %5ss] %s\n' "${RIG_TAG:-rig}" "$(since "$T_START")" "$*"; }
die()   { log "ERROR: $*"; exit 1; }

# a live process (not a zombie) with this PID and command name
alive() { [ -n "$1" ] && [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] \
            && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]; }
# the PID in this file is alive and runs this command
pid_alive() { local p; [ -s "$1" ] || return 1; p=$(cat "$1" 2>/dev/null) || return 1; alive "$p" "$2"; }
# is any process with this command name running (whoever started it)? (read-only /proc scan)
running() { local f c p; for f in /proc/[0-9]*/comm; do { read -r c < "$f"; } 2>/dev/null || continue
  [ "$c" = "$1" ] || continue; p=${f#/proc/}; p=${p%/comm}; alive "$p" "$1" && return 0; done; return 1; }
# wait_for SECONDS DESCRIPTION COMMAND... : retry COMMAND every 0.1 s until it succeeds; dies after
# SECONDS of wall-clock time (not a count of tries: a probe may itself take seconds, e.g. sacctmgr
# while slurmdbd is down takes up to its 10 s timeout)
wait_for() {
  local secs=$1 what=$2 deadline=$(( ${EPOCHREALTIME%.*} + $1 )); shift 2
  while ! "$@" >/dev/null 2>&1; do
    [ "${EPOCHREALTIME%.*}" -lt "$deadline" ] || die "timed out after ${secs}s waiting for $what"; sleep 0.1
  done; }

# missing_packages PKG... : prints the packages dpkg does not have installed
missing_packages() { local p
  for p in "$@"; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || echo "$p"
  done; }

# apt_install LOGFILE PKG... : install without letting package scripts start daemons (no
# systemd here); update the package lists first on a fresh machine, and retry once after an
# update when the install fails. Dies with the log's tail on failure.
apt_install() {
  local logf=$1 t0=$EPOCHREALTIME added=0 rc=0; shift
  log "installing: $*"
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; added=1
  fi
  local apt=(apt-get -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends)
  : > "$logf"
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    log "no apt package lists; apt-get update"
    apt-get -q -o DPkg::Lock::Timeout=600 update >> "$logf" 2>&1 || log "warning: apt-get update failed"
  fi
  if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$@" >> "$logf" 2>&1; then
    log "install failed; apt-get update and retry"
    apt-get -q -o DPkg::Lock::Timeout=600 update >> "$logf" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$@" >> "$logf" 2>&1 || rc=$?
  fi
  [ $added = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || { tail -n 20 "$logf"; die "apt-get install failed (log: $logf)"; }
  log "install took $(since "$t0")s"
}

# stop_pidfile NAME PIDFILE SECONDS : TERM the process in PIDFILE if it still runs NAME, KILL it
# after SECONDS; removes the PID file. Returns 0 when it stopped something.
stop_pidfile() {
  local name=$1 pf=$2 secs=$3 pid
  [ -s "$pf" ] || return 1
  pid=$(cat "$pf")
  rm -f "$pf"
  alive "$pid" "$name" || return 1
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 $(( secs * 10 ))); do alive "$pid" "$name" || break; sleep 0.1; done
  if alive "$pid" "$name"; then log "$name ($pid) ignored TERM for ${secs}s; KILL"; kill -KILL "$pid"; fi
  log "stopped $name (pid $pid)"
}
