#!/bin/bash
# start-slurm.sh - install (if missing), configure and start a single-node SLURM
# cluster on loopback for Corral's integration tests. Debian 12, run as root, no
# systemd needed.
#
# Idempotent: every daemon is first probed (munge/unmunge, mariadb-admin ping,
# sacctmgr, scontrol ping, a slurmd process) and only started when it does not
# answer, so a second run - or a run on a machine whose cluster was started by
# some other script - finds everything up and exits 0 without touching it.
# The configuration in /etc/slurm is (re)written only while no SLURM daemon is
# running, or when every running one was started by this script (they are then
# restarted); a cluster started by someone else keeps its configuration.
#
# Knobs (environment):
#   CORRAL_RIG_SLURM_ACCOUNTING=dbd|none  dbd (default): slurmdbd + MariaDB (unix
#                                   socket only), full sacct. none: no database,
#                                   jobcomp/filetxt; only `sacct -c` works.
#   CORRAL_RIG_SLURM_CPUS=24        CPUs declared for the node (oversubscribes the
#                                   real cores: 24 one-CPU jobs run at once; a short
#                                   job spends most of its life in slurmd/slurmstepd,
#                                   so fewer leave the cores idle).
#   CORRAL_RIG_SLURM_CGROUP=auto|yes|no  auto: cgroup v1 (proctrack/task cgroup,
#                                   memory enforced -> OUT_OF_MEMORY) when
#                                   /sys/fs/cgroup/{memory,freezer} are usable;
#                                   else linuxproc + OverMemoryKill (-> FAILED).
#   CORRAL_RIG_SLURM_CLEAN=0|1      1: wipe slurmctld/slurmd state first (only
#                                   when slurmctld is not running).
#   CORRAL_RIG_SLURM_CLUSTER=NAME   ClusterName (default: the name already in the
#                                   state directory, else "corral").
#   CORRAL_RIG_SLURM_TIMEOUT=90     seconds to wait for the node to become idle.
#   CORRAL_RIG_SLURM_MPI=pmix|none  MpiDefault: pmix (default) lets a plain `srun` start
#                                   the ranks of Debian's Open MPI (built with PMIx only:
#                                   its ranks under --mpi=pmi2 or none run as singletons).
#                                   Installs libpmix-dev: slurm's mpi/pmix plugin dlopens
#                                   .../pmix2/lib/libpmix.so, which only that package ships.
#                                   A slurmd started before that library existed cannot
#                                   serve PMIx steps (their slurmstepd hangs, blocking the
#                                   node), so a slurmd of ours whose log says "can not load
#                                   PMIx library" since its start is restarted.
#
# PID files of the daemons this script started: /run/corral-rig/slurm/*.pid
# (what stop-slurm.sh stops). Environment for tests: /run/corral-rig/env.
set -euo pipefail
RIG_TAG=slurm
. "$(dirname "$0")/lib.sh"

TAIL_LOGS=0   # set once daemons get started: die() then shows their logs
die()  {
  log "ERROR: $*"
  [ "$TAIL_LOGS" = 1 ] || exit 1
  for f in slurmctld slurmd slurmdbd; do
    if [ -f "/var/log/slurm/$f.log" ]; then echo "--- tail /var/log/slurm/$f.log"; tail -n 15 "/var/log/slurm/$f.log"; fi
  done
  exit 1
}
[ "$(id -u)" = 0 ] || { echo "start-slurm.sh: must run as root" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ACCT=${CORRAL_RIG_SLURM_ACCOUNTING:-dbd}
NCPU=${CORRAL_RIG_SLURM_CPUS:-24}
CGROUP=${CORRAL_RIG_SLURM_CGROUP:-auto}
CLEAN=${CORRAL_RIG_SLURM_CLEAN:-0}
TIMEOUT=${CORRAL_RIG_SLURM_TIMEOUT:-90}
MPI=${CORRAL_RIG_SLURM_MPI:-pmix}
case "$ACCT" in dbd|none) ;; *) die "CORRAL_RIG_SLURM_ACCOUNTING must be dbd or none";; esac
case "$NCPU" in ''|*[!0-9]*) die "CORRAL_RIG_SLURM_CPUS must be a number";; esac
case "$MPI" in pmix|none) ;; *) die "CORRAL_RIG_SLURM_MPI must be pmix or none";; esac

RIG=/run/corral-rig
RUN=$RIG/slurm                 # PID files of the daemons we started
ETC=/etc/slurm
LOG=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
DEFAULT_DB_PASS=corral-rig
CLUSTER=${CORRAL_RIG_SLURM_CLUSTER:-$(cat "$CTLD_SPOOL/clustername" 2>/dev/null || true)}
CLUSTER=${CLUSTER:-corral}

# ---------------------------------------------------------------- helpers
conf_value() { # file key -> value of "Key=value" (case-insensitive key), empty if absent
  [ -f "$1" ] || return 0
  awk -F= -v k="$2" 'tolower($1)==tolower(k) {sub(/^[^=]*=/, ""); v=$0} END{print v}' "$1"; }
ctld_up() { timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }
# did the running slurmd fail to load PMIx when it started? (its log since the last start line)
slurmd_lacks_pmix() {
  local f; f=$(conf_value "$ETC/slurm.conf" SlurmdLogFile); f=${f:-$LOG/slurmd.log}
  [ -f "$f" ] || return 1
  awk '/slurmd version .* started/ {bad=0} /mpi\/pmix.*can not load PMIx library/ {bad=1}
       END {exit !bad}' "$f"; }
dbd_up()  { timeout 10 sacctmgr -n show cluster >/dev/null 2>&1; }
# a daemon we start writes the PID file named in its config; keep a copy in $RUN
record_pid() { # name configured-pidfile
  wait_for 30 "$1 pid file" pid_alive "$2" "$1"
  [ "$2" -ef "$RUN/$1.pid" ] || cp "$2" "$RUN/$1.pid"; }

# ---------------------------------------------------------------- install
PKGS=(munge slurmctld slurmd slurm-client)
[ "$MPI" = pmix ] && PKGS+=(libpmix-dev)
[ "$ACCT" = dbd ] && PKGS+=(slurmdbd mariadb-server)
mapfile -t MISSING < <(missing_packages "${PKGS[@]}")
if [ ${#MISSING[@]} -gt 0 ]; then
  apt_install /tmp/corral-rig-slurm-apt.log "${MISSING[@]}"
fi

# ---------------------------------------------------------------- host name
NODE=$(hostname -s)
if ! getent hosts "$NODE" >/dev/null; then
  log "host name $NODE does not resolve; adding it to /etc/hosts as 127.0.0.1"
  echo "127.0.0.1 $NODE" >> /etc/hosts
fi

mkdir -p "$RUN" "$LOG" "$CTLD_SPOOL" "$SLURMD_SPOOL" "$ETC"
if [ "$CLEAN" = 1 ]; then
  if running slurmctld || running slurmd; then
    log "CORRAL_RIG_SLURM_CLEAN=1 ignored: SLURM daemons are running (stop them first)"
  else
    log "CORRAL_RIG_SLURM_CLEAN=1: wiping $CTLD_SPOOL and $SLURMD_SPOOL"
    rm -rf "${CTLD_SPOOL:?}"/* "${SLURMD_SPOOL:?}"/*
    CLUSTER=${CORRAL_RIG_SLURM_CLUSTER:-corral}
  fi
fi

# ---------------------------------------------------------------- cgroups
cg_v1_ok() {
  [ -d /sys/fs/cgroup/memory ] && [ -d /sys/fs/cgroup/freezer ] || return 1
  [ "$(stat -fc %T /sys/fs/cgroup)" = tmpfs ] || return 1           # v1 layout
  local t=/sys/fs/cgroup/memory/corral-rig-probe.$$
  mkdir "$t" 2>/dev/null && rmdir "$t"; }
case "$CGROUP" in
  yes) USE_CG=1;;
  no)  USE_CG=0;;
  *)   if cg_v1_ok; then USE_CG=1; else USE_CG=0; fi;;
esac

# ---------------------------------------------------------------- configuration
MEM_MB=$(awk '/MemTotal/ {print int($2/1024*0.75)}' /proc/meminfo)
DEFMEM=$(( MEM_MB / NCPU ))
if [ $USE_CG = 1 ]; then
  PROCTRACK=proctrack/cgroup; TASK=task/cgroup; GATHERPARAMS=NoOverMemoryKill
else
  PROCTRACK=proctrack/linuxproc; TASK=task/none; GATHERPARAMS=OverMemoryKill
fi
if [ "$ACCT" = dbd ]; then
  ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819"
else
  ACCT_LINES="AccountingStorageType=accounting_storage/none"
fi
# keep the MariaDB password of an existing slurmdbd.conf: a running slurmdbd may use it
DB_PASS=$(conf_value "$ETC/slurmdbd.conf" StoragePass)
DB_PASS=${DB_PASS:-$DEFAULT_DB_PASS}

CFG=$(mktemp -d); trap 'rm -rf "$CFG"' EXIT
cat > "$CFG/slurm.conf" <<EOF
# generated by Corral's scripts/rig/start-slurm.sh - single node, loopback only
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=$PROCTRACK
TaskPlugin=$TASK
MpiDefault=$MPI
SwitchType=switch/none
ReturnToService=2
# trust the node line below even though the machine has fewer cores
SlurmdParameters=config_overrides
# fast scheduling: no 3 s batch delay, main + backfill pass every second
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$DEFMEM
MaxArraySize=10001
MaxJobCount=50000
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=$GATHERPARAMS
$ACCT_LINES
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log
InactiveLimit=0
# seconds between SIGTERM and SIGKILL on scancel/time limit (default 30)
KillWait=2
# finished jobs stay visible to squeue -t all / scontrol for this long
MinJobAge=300
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
cat > "$CFG/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainRAMSpace=yes
ConstrainSwapSpace=no
ConstrainCores=no
ConstrainDevices=no
EOF
cat > "$CFG/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=$NODE
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$DB_PASS
EOF

CONF_FILES=(slurm.conf cgroup.conf)
[ "$ACCT" = dbd ] && CONF_FILES+=(slurmdbd.conf)
DIFFERS=()
for f in "${CONF_FILES[@]}"; do cmp -s "$CFG/$f" "$ETC/$f" || DIFFERS+=("$f"); done

if [ ${#DIFFERS[@]} -gt 0 ]; then
  OURS=1; ANY=0
  for d in slurmctld slurmd slurmdbd; do
    if running "$d"; then ANY=1; pid_alive "$RUN/$d.pid" "$d" || OURS=0; fi
  done
  if [ $ANY = 1 ] && [ $OURS = 0 ]; then
    log "SLURM daemons started by something else are running: leaving their configuration in $ETC as it is" \
        "(ours would differ in: ${DIFFERS[*]})"
  else
    if [ $ANY = 1 ]; then
      log "configuration changed (${DIFFERS[*]}); restarting the SLURM daemons this script started"
      "$HERE/stop-slurm.sh" --keep-base --keep-jobs >/dev/null
    fi
    for f in "${DIFFERS[@]}"; do
      mode=644; [ "$f" = slurmdbd.conf ] && mode=600
      install -m "$mode" "$CFG/$f" "$ETC/$f"
    done
    log "wrote ${DIFFERS[*]} in $ETC (cgroup=$USE_CG accounting=$ACCT cpus=$NCPU)"
  fi
fi

# from here on, what counts is the configuration in force
EFF_ACCT=none
[ "$(conf_value "$ETC/slurm.conf" AccountingStorageType)" = accounting_storage/slurmdbd ] && EFF_ACCT=dbd
[ "$EFF_ACCT" = "$ACCT" ] || log "note: accounting in force is '$EFF_ACCT' (asked for '$ACCT')"
CLUSTER=$(conf_value "$ETC/slurm.conf" ClusterName)
CTLD_PIDFILE=$(conf_value "$ETC/slurm.conf" SlurmctldPidFile); CTLD_PIDFILE=${CTLD_PIDFILE:-/run/slurmctld.pid}
SLURMD_PIDFILE=$(conf_value "$ETC/slurm.conf" SlurmdPidFile);  SLURMD_PIDFILE=${SLURMD_PIDFILE:-/run/slurmd.pid}
DBD_PIDFILE=$(conf_value "$ETC/slurmdbd.conf" PidFile);        DBD_PIDFILE=${DBD_PIDFILE:-/run/slurmdbd.pid}
mkdir -p "$(dirname "$CTLD_PIDFILE")" "$(dirname "$SLURMD_PIDFILE")" "$(dirname "$DBD_PIDFILE")"

# ---------------------------------------------------------------- munge
TAIL_LOGS=1
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "munged already answering"
else
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 2>/dev/null > /etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  wait_for 10 munged bash -c 'munge -n | unmunge'
  record_pid munged /run/munge/munged.pid
  log "munged started (pid $(cat "$RUN/munged.pid"))"
fi

# ---------------------------------------------------------------- accounting database
if [ "$EFF_ACCT" = dbd ]; then
  if mariadb-admin ping >/dev/null 2>&1; then
    log "MariaDB already answering"
  else
    install -d -o mysql -g mysql -m 0755 /run/mysqld
    install -d -o mysql -g adm -m 2750 /var/log/mysql
    if [ ! -d /var/lib/mysql/mysql ]; then
      mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
    fi
    # unix socket only (--skip-networking): nothing listens on TCP
    setsid /usr/sbin/mariadbd --user=mysql --skip-networking \
      --pid-file=/run/mysqld/mysqld.pid --socket=/run/mysqld/mysqld.sock \
      --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
      --log-error=/var/log/mysql/error.log </dev/null >/dev/null 2>&1 &
    echo $! > "$RUN/mariadbd.pid"
    wait_for 60 MariaDB mariadb-admin ping
    log "MariaDB started (pid $(cat "$RUN/mariadbd.pid"))"
  fi
  DB_PASS=$(conf_value "$ETC/slurmdbd.conf" StoragePass)
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
              CREATE DATABASE IF NOT EXISTS slurm_acct_db;
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" || die "MariaDB: cannot create the slurm user"
  if dbd_up; then
    log "slurmdbd already answering"
  elif running slurmdbd; then
    wait_for 30 "the running slurmdbd to answer" dbd_up
    log "slurmdbd (already running) answering"
  else
    slurmdbd || die "slurmdbd failed to start"
    record_pid slurmdbd "$DBD_PIDFILE"
    wait_for 30 slurmdbd dbd_up
    log "slurmdbd started (pid $(cat "$RUN/slurmdbd.pid"))"
  fi
  if [ -z "$(sacctmgr -n -P show cluster "$CLUSTER" format=cluster 2>/dev/null)" ]; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
    log "registered cluster $CLUSTER in slurmdbd"
  fi
fi

# ---------------------------------------------------------------- slurmctld / slurmd
if ctld_up; then
  log "slurmctld already answering"
elif running slurmctld; then
  wait_for 30 "the running slurmctld to answer" ctld_up
  log "slurmctld (already running) answering"
else
  slurmctld || die "slurmctld failed to start"
  record_pid slurmctld "$CTLD_PIDFILE"
  wait_for 30 slurmctld ctld_up
  log "slurmctld started (pid $(cat "$RUN/slurmctld.pid"))"
fi
if running slurmd && slurmd_lacks_pmix; then
  if pid_alive "$RUN/slurmd.pid" slurmd; then
    log "slurmd started before PMIx was installed (its log: can not load PMIx library); restarting it"
    stop_pidfile slurmd "$RUN/slurmd.pid" 20 || true
  else
    log "warning: the running slurmd (not started by this script) could not load PMIx;" \
        "srun --mpi=pmix steps would hang: restart it"
  fi
fi
if running slurmd; then
  log "slurmd already running"
else
  slurmd || die "slurmd failed to start"
  record_pid slurmd "$SLURMD_PIDFILE"
  log "slurmd started (pid $(cat "$RUN/slurmd.pid"))"
fi

# wait for the node to be usable (resume it if a previous run left it down/drained)
deadline=$(( ${EPOCHREALTIME%.*} + TIMEOUT )); st=
while :; do
  st=$(timeout 10 sinfo -h -n "$NODE" -o %T 2>/dev/null | head -1 || true)
  case "$st" in
    idle|mixed|allocated|completing) break;;
    down*|drain*|fail*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true;;
  esac
  [ "${EPOCHREALTIME%.*}" -lt "$deadline" ] || die "node $NODE not idle after ${TIMEOUT}s (state: ${st:-none})"
  sleep 0.1
done
log "node $NODE is $st (cluster=$CLUSTER accounting=$EFF_ACCT" \
    "$(conf_value "$ETC/slurm.conf" ProctrackType) cpus=$(sinfo -h -n "$NODE" -o %c | head -1))"

# ---------------------------------------------------------------- environment for tests
mkdir -p "$RIG/env.d"
printf 'CORRAL_TEST_SLURM=1\nCORRAL_TEST_SLURM_ACCOUNTING=%s\nCORRAL_TEST_SLURM_PARTITION=%s\n' \
  "$EFF_ACCT" "$(sinfo -h -o '%P' | sed -n 's/\*$//p' | head -1)" > "$RIG/env.d/slurm"
cat "$RIG"/env.d/* > "$RIG/env.tmp" && mv "$RIG/env.tmp" "$RIG/env"
log "SLURM ready in $(since "$T_START")s"
