#!/bin/bash
# start-sge.sh - install (if missing), configure and start a single-node
# (Son of) Grid Engine 8.1.9 from Debian 12 on loopback, for Corral's
# integration tests. Run as root; no systemd needed.
#
# Result: sge_qmaster + sge_execd, queue all.q (N slots, bash, #! lines
# honoured), parallel environments smp ($pe_slots) and mpi ($fill_up, control_slaves
# TRUE, job_is_first_task FALSE: Open MPI's mpirun, built with gridengine support,
# reads $PE_HOSTFILE and starts ranks on other hosts with qrsh -inherit), both in
# all.q's pe_list, scheduler run every second
# and 1 s after each submit/finish, root (uid 0) allowed to run jobs,
# accounting records flushed at once.
#
# Idempotent: daemons are probed (qconf answering, an sge_execd process) and
# only started when absent; each configuration item is compared first and
# changed only when it differs, so a second run - or a run against a cell
# started by some other script - leaves a working cluster untouched and exits 0.
#
# Knobs (environment):
#   CORRAL_RIG_SGE_SLOTS=24      slots of the all.q queue instance (oversubscribes the cores)
#   CORRAL_RIG_SGE_DRMAA=1       also install gridengine-drmaa1.0 (libdrmaa.so.1.0)
#   CORRAL_RIG_SGE_TIMEOUT=60    seconds to wait for the queue instance to come up
#
# PID files of the daemons this script started: /run/corral-rig/sge/*.pid.
# Environment for users/tests: scripts/rig/sge-env.sh and /run/corral-rig/env.
set -euo pipefail
RIG_TAG=sge
. "$(dirname "$0")/lib.sh"

die()  { log "ERROR: $*"; tail -n 15 /var/spool/gridengine/qmaster/messages 2>/dev/null || true; exit 1; }
[ "$(id -u)" = 0 ] || { echo "start-sge.sh: must run as root" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SLOTS=${CORRAL_RIG_SGE_SLOTS:-24}
DRMAA=${CORRAL_RIG_SGE_DRMAA:-1}
TIMEOUT=${CORRAL_RIG_SGE_TIMEOUT:-60}
case "$SLOTS" in ''|*[!0-9]*) die "CORRAL_RIG_SGE_SLOTS must be a number";; esac
RIG=/run/corral-rig
RUN=$RIG/sge                           # PID files of the daemons we started
# shellcheck source=sge-env.sh
. "$HERE/sge-env.sh"                   # SGE_ROOT SGE_CELL SGE_QMASTER_PORT SGE_EXECD_PORT
COMMON=$SGE_ROOT/$SGE_CELL/common
SPOOL=/var/spool/gridengine
NODE=$(hostname -s)
Q="all.q@$NODE"

qconf() { timeout 20 /usr/bin/qconf "$@"; }
qmaster_up() { qconf -sh >/dev/null 2>&1; }
put_file() { # file content-on-stdin: write only when different (keeps mtimes of a running cell)
  local tmp; tmp=$(mktemp); cat > "$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else install -m 0644 -o sgeadmin -g sgeadmin "$tmp" "$1"; rm -f "$tmp"; fi; }
# "key value" lines of a qconf object, continuation lines joined, blanks squeezed
normalise() { sed -e ':a;/\\$/N;s/\\\n *//;ta' | awk 'NF && $1 !~ /^#/ {k=$1; $1=""; sub(/^ +/, ""); print k, $0}'; }

# ---------------------------------------------------------------- host name
if ! getent hosts "$NODE" >/dev/null; then
  log "host name $NODE does not resolve; adding it to /etc/hosts as 127.0.0.1"
  echo "127.0.0.1 $NODE" >> /etc/hosts
fi

# ---------------------------------------------------------------- install
PKGS=(gridengine-common gridengine-master gridengine-exec gridengine-client)
[ "$DRMAA" = 1 ] && PKGS+=(gridengine-drmaa1.0)
mapfile -t MISSING < <(missing_packages "${PKGS[@]}")
if [ ${#MISSING[@]} -gt 0 ]; then
  # debconf answers: configure automatically, cell "default", master = this host
  for p in gridengine-common gridengine-client gridengine-master gridengine-exec; do
    printf '%s shared/gridengineconfig boolean true\n%s shared/gridenginecell string default\n%s shared/gridenginemaster string %s\n' \
      "$p" "$p" "$p" "$NODE"
  done | debconf-set-selections
  apt_install /tmp/corral-rig-sge-apt.log "${MISSING[@]}"
fi

# ---------------------------------------------------------------- cell
if [ ! -e "$SPOOL/spooldb/sge" ]; then          # the postinst did not initialise the cell
  log "initialising cell $SGE_CELL"
  for d in "$SPOOL/qmaster" "$SPOOL/qmaster/job_scripts" "$SPOOL/spooldb" "$SPOOL/execd" "$COMMON"; do
    install -d -o sgeadmin -g sgeadmin -m 0755 "$d"
  done
  [ -e "$COMMON/bootstrap" ] || install -m0644 -o sgeadmin -g sgeadmin /usr/share/gridengine/default-bootstrap "$COMMON/bootstrap"
  su -s /bin/sh -c "/usr/share/gridengine/scripts/init_cluster $SGE_ROOT $SGE_CELL $SPOOL/spooldb sgeadmin" sgeadmin >/dev/null \
    || die "init_cluster failed"
fi
echo "$NODE" | put_file "$COMMON/act_qmaster"
# 127.0.0.1 resolves back to "localhost": tell SGE that localhost is this host
if [ "$NODE" != localhost ]; then echo "$NODE localhost" | put_file "$COMMON/host_aliases"; fi
install -d -o sgeadmin -g sgeadmin -m 0755 /run/gridengine
mkdir -p "$RUN"

# ---------------------------------------------------------------- qmaster
if qmaster_up; then
  log "sge_qmaster already answering"
elif running sge_qmaster; then
  wait_for 30 "the running sge_qmaster to answer" qmaster_up
  log "sge_qmaster (already running) answering"
else
  rm -f "$SPOOL/qmaster/qmaster.pid"
  (cd / && /usr/sbin/sge_qmaster) || die "sge_qmaster failed to start"
  wait_for 30 "qmaster pid file" test -s "$SPOOL/qmaster/qmaster.pid"
  cp "$SPOOL/qmaster/qmaster.pid" "$RUN/sge_qmaster.pid"
  wait_for 30 "qmaster answering" qmaster_up
  log "sge_qmaster started (pid $(cat "$RUN/sge_qmaster.pid"))"
fi

# ---------------------------------------------------------------- configuration (compare, then change)
CFG=$(mktemp -d); trap 'rm -rf "$CFG"' EXIT
changed=()
qconf -sh | grep -qx "$NODE" || { qconf -ah "$NODE" >/dev/null 2>&1; changed+=("admin host"); }
qconf -ss 2>/dev/null | grep -qx "$NODE" || { qconf -as "$NODE" >/dev/null 2>&1; changed+=("submit host"); }

# global: allow root (uid/gid 0) to run jobs; write accounting records at once
qconf -sconf global | sed 1d | sed -e ':a;/\\$/N;s/\\\n *//;ta' > "$CFG/global.now"
sed -e 's/^min_uid .*/min_uid                      0/' -e 's/^min_gid .*/min_gid                      0/' \
    -e 's/^reporting_params .*/reporting_params             accounting=true reporting=false flush_time=00:00:01 accounting_flush_time=00:00:00 joblog=false sharelog=00:00:00/' \
    "$CFG/global.now" > "$CFG/global"
if [ "$(normalise < "$CFG/global.now")" != "$(normalise < "$CFG/global")" ]; then
  qconf -Mconf "$CFG/global" >/dev/null 2>&1 || die "qconf -Mconf failed"; changed+=("global config")
fi
# scheduler: run every second and 1 s after each submit/finish (defaults: 15 s, off, off)
qconf -ssconf > "$CFG/sconf.now"
sed -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
    -e 's/^flush_submit_sec .*/flush_submit_sec                  1/' \
    -e 's/^flush_finish_sec .*/flush_finish_sec                  1/' \
    -e 's/^job_load_adjustments .*/job_load_adjustments              NONE/' \
    -e 's/^load_adjustment_decay_time .*/load_adjustment_decay_time        0:0:0/' "$CFG/sconf.now" > "$CFG/sconf"
if [ "$(normalise < "$CFG/sconf.now")" != "$(normalise < "$CFG/sconf")" ]; then
  qconf -Msconf "$CFG/sconf" >/dev/null 2>&1 || die "qconf -Msconf failed"; changed+=("scheduler config")
fi
if ! qconf -sel 2>/dev/null | grep -qx "$NODE"; then
  printf 'hostname %s\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' "$NODE" > "$CFG/exechost"
  qconf -Ae "$CFG/exechost" >/dev/null 2>&1 || die "qconf -Ae failed"; changed+=("exec host")
fi
if ! qconf -spl 2>/dev/null | grep -qx smp; then
  # shellcheck disable=SC2016  # $pe_slots is SGE syntax
  printf 'pe_name smp\nslots 9999\nuser_lists NONE\nxuser_lists NONE\nstart_proc_args NONE\nstop_proc_args NONE\nallocation_rule $pe_slots\ncontrol_slaves FALSE\njob_is_first_task TRUE\nurgency_slots min\naccounting_summary FALSE\nqsort_args NONE\n' > "$CFG/smp"
  qconf -Ap "$CFG/smp" >/dev/null 2>&1 || die "qconf -Ap failed"; changed+=("PE smp")
fi
if ! qconf -spl 2>/dev/null | grep -qx mpi; then
  # shellcheck disable=SC2016  # $fill_up is SGE syntax
  printf 'pe_name mpi\nslots 9999\nuser_lists NONE\nxuser_lists NONE\nstart_proc_args NONE\nstop_proc_args NONE\nallocation_rule $fill_up\ncontrol_slaves TRUE\njob_is_first_task FALSE\nurgency_slots min\naccounting_summary FALSE\nqsort_args NONE\n' > "$CFG/mpi"
  qconf -Ap "$CFG/mpi" >/dev/null 2>&1 || die "qconf -Ap mpi failed"; changed+=("PE mpi")
fi
if ! qconf -sql 2>/dev/null | grep -qx all.q; then
  # the default queue template, with: this host, N slots, bash, honour #! lines
  # (unix_behavior), no load alarm thresholds, PEs smp and mpi
  cat > "$CFG/all.q" <<EOF
qname                 all.q
hostlist              $NODE
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               smp mpi
rerun                 FALSE
slots                 $SLOTS
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      unix_behavior
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
  qconf -Aq "$CFG/all.q" >/dev/null 2>&1 || die "qconf -Aq failed"; changed+=("queue all.q")
elif [ "$(qconf -sq all.q | awk '$1=="slots" {print $2}')" != "$SLOTS" ]; then
  qconf -mattr queue slots "$SLOTS" all.q >/dev/null 2>&1 || die "qconf -mattr queue slots failed"
  changed+=("all.q slots=$SLOTS")
fi
for pe in smp mpi; do  # an all.q made before (or by someone else) may lack one
  if ! qconf -sq all.q | normalise | awk '$1=="pe_list"' | tr ' ,' '\n\n' | grep -qx "$pe"; then
    qconf -aattr queue pe_list "$pe" all.q >/dev/null 2>&1 || die "qconf -aattr queue pe_list $pe failed"
    changed+=("all.q pe_list+=$pe")
  fi
done
if [ ${#changed[@]} -gt 0 ]; then log "configured: ${changed[*]}"; else log "configuration already in place"; fi

# ---------------------------------------------------------------- execd
if running sge_execd; then
  log "sge_execd already running"
else
  rm -f "$SPOOL"/execd/*/execd.pid
  (cd / && /usr/sbin/sge_execd) || die "sge_execd failed to start"
  wait_for 30 "execd pid file" bash -c "ls $SPOOL/execd/*/execd.pid"
  # shellcheck disable=SC2012
  pf=$(ls -t "$SPOOL"/execd/*/execd.pid | head -1)
  wait_for 10 "execd pid" test -s "$pf"
  cp "$pf" "$RUN/sge_execd.pid"
  log "sge_execd started (pid $(cat "$RUN/sge_execd.pid"))"
fi

# wait until the queue instance is up (no 'u'nknown / 'E'rror / 'd'isabled state)
deadline=$(( ${EPOCHREALTIME%.*} + TIMEOUT ))
while :; do
  line=$(timeout 10 qstat -f -q "$Q" 2>/dev/null | awk -v q="$Q" '$1==q' || true)
  st=$(echo "$line" | awk '{print $6}')
  if [ -n "$line" ] && [ -z "$st" ]; then break; fi
  case "$st" in *E*) qmod -c "$Q" >/dev/null 2>&1 || true;; esac
  case "$st" in *d*) qmod -e "$Q" >/dev/null 2>&1 || true;; esac
  [ "${EPOCHREALTIME%.*}" -lt "$deadline" ] || die "queue $Q not up after ${TIMEOUT}s (state '${st}')"
  sleep 0.1
done
log "queue $Q up: $(echo "$line" | awk '{print $3}') slots (resv/used/tot)"

# ---------------------------------------------------------------- environment for tests
mkdir -p "$RIG/env.d"
{
  echo "CORRAL_TEST_SGE=1"
  echo "SGE_ROOT=$SGE_ROOT"
  echo "SGE_CELL=$SGE_CELL"
  echo "SGE_QMASTER_PORT=$SGE_QMASTER_PORT"
  echo "SGE_EXECD_PORT=$SGE_EXECD_PORT"
  if [ -n "${DRMAA_LIBRARY_PATH:-}" ]; then echo "DRMAA_LIBRARY_PATH=$DRMAA_LIBRARY_PATH"; fi
} > "$RIG/env.d/sge"
cat "$RIG"/env.d/* > "$RIG/env.tmp" && mv "$RIG/env.tmp" "$RIG/env"
log "SGE ready in $(since "$T_START")s"
