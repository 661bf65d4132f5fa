#!/bin/bash
# start-sshd.sh - run a separate OpenSSH server for Corral's SSH-transport tests:
# 127.0.0.1 port 2222 only, public-key authentication only, root allowed with a
# key (PermitRootLogin prohibit-password), sftp via internal-sftp. Its own
# config, host key, PID file and log live in /run/corral-rig/sshd; the system's
# sshd (port 22) and /root/.ssh are not touched.
#
# A throwaway client key pair /run/corral-rig/ssh/id_ed25519 is authorized for
# root through this server's AuthorizedKeysFile; /run/corral-rig/ssh/known_hosts
# holds the host key and /run/corral-rig/ssh/config a ready "Host corral-rig".
#
# Idempotent: an instance that is up and accepts the key is left running (it
# is restarted only when its config changed). Prints how to connect.
#
# Knobs (environment):
#   CORRAL_RIG_SSH_PORT=2222
set -euo pipefail
RIG_TAG=sshd
. "$(dirname "$0")/lib.sh"

die()  { log "ERROR: $*"; [ -f "$DIR/sshd.log" ] && tail -n 15 "$DIR/sshd.log"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "start-sshd.sh: must run as root" >&2; exit 1; }

PORT=${CORRAL_RIG_SSH_PORT:-2222}
RIG=/run/corral-rig
DIR=$RIG/sshd                 # server side: config, host key, pid, log
CLI=$RIG/ssh                  # client side: key pair, authorized_keys, known_hosts, config
KEY=$CLI/id_ed25519
PIDFILE=$DIR/sshd.pid

ssh_ok() {
  timeout 15 ssh -q -i "$KEY" -p "$PORT" -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=5 \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1 true; }
port_busy() { ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .; }

# ---------------------------------------------------------------- install
PKGS=(openssh-server openssh-client iproute2)
mapfile -t MISSING < <(missing_packages "${PKGS[@]}")
if [ ${#MISSING[@]} -gt 0 ]; then
  apt_install /tmp/corral-rig-sshd-apt.log "${MISSING[@]}"
fi

# ---------------------------------------------------------------- keys
# sshd's StrictModes wants root-owned, not group/world-writable directories
install -d -m 0755 "$RIG"
install -d -m 0700 "$DIR"
install -d -m 0755 "$CLI"
install -d -m 0755 /run/sshd                    # privilege separation directory
if [ ! -s "$DIR/ssh_host_ed25519_key" ]; then
  ssh-keygen -q -t ed25519 -N '' -C "corral-rig-host" -f "$DIR/ssh_host_ed25519_key"
  log "generated host key $DIR/ssh_host_ed25519_key"
fi
if [ ! -s "$KEY" ] || [ ! -s "$KEY.pub" ]; then
  rm -f "$KEY" "$KEY.pub"
  ssh-keygen -q -t ed25519 -N '' -C "corral-rig-client" -f "$KEY"
  log "generated client key $KEY"
fi
chmod 600 "$KEY"; chmod 644 "$KEY.pub"
install -m 0644 "$KEY.pub" "$CLI/authorized_keys.root"
printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")" > "$CLI/known_hosts"
cat > "$CLI/config" <<EOF
# ssh -F $CLI/config corral-rig
Host corral-rig
    HostName 127.0.0.1
    Port $PORT
    User root
    IdentityFile $KEY
    IdentitiesOnly yes
    UserKnownHostsFile $CLI/known_hosts
    StrictHostKeyChecking yes
    BatchMode yes
EOF

# ---------------------------------------------------------------- server config
TMP=$(mktemp); trap 'rm -f "$TMP"' EXIT
cat > "$TMP" <<EOF
# written by Corral's scripts/rig/start-sshd.sh - test sshd on loopback only
Port $PORT
ListenAddress 127.0.0.1
AddressFamily inet
HostKey $DIR/ssh_host_ed25519_key
PidFile $PIDFILE
# keys only; root may log in with a key
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PermitRootLogin prohibit-password
AuthorizedKeysFile $CLI/authorized_keys.%u .ssh/authorized_keys
StrictModes yes
# no PAM: pam_loginuid/pam_systemd sessions fail in containers
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
AcceptEnv LANG LC_* CORRAL_*
# Every session's bash reads the user's ~/.bashrc (Debian's bash does under sshd); where that runs
# `pyenv init`, each command first takes pyenv's rehash lock, and a lock left by a killed shell
# made every later command wait 60 s for it: give up at once instead (pyenv skips the rehash).
SetEnv PYENV_REHASH_TIMEOUT=0
# tests open many connections at once
MaxStartups 200:30:400
MaxSessions 100
LoginGraceTime 30
ClientAliveInterval 0
LogLevel INFO
Subsystem sftp internal-sftp
EOF
/usr/sbin/sshd -t -f "$TMP" || die "generated sshd config does not validate"
CONF_CHANGED=0
cmp -s "$TMP" "$DIR/sshd_config" || CONF_CHANGED=1

# A rehash lock of pyenv's left by a killed shell (no rehash running now) is removed: see SetEnv.
if [ -f "${PYENV_ROOT:-$HOME/.pyenv}/shims/.pyenv-shim" ] && ! pgrep -f pyenv-rehash >/dev/null; then
  log "removing a stale pyenv rehash lock"
  rm -f "${PYENV_ROOT:-$HOME/.pyenv}/shims/.pyenv-shim"
fi

# ---------------------------------------------------------------- server
UP=0   # our sshd runs and accepts the key
if pid_alive "$PIDFILE" sshd; then
  why=
  if [ $CONF_CHANGED = 1 ]; then why="config changed"; elif ssh_ok; then UP=1; else why="it does not accept the key"; fi
  if [ -n "$why" ]; then
    old=$(cat "$PIDFILE")
    log "$why; restarting sshd (pid $old)"
    kill -TERM "$old"
    wait_for 10 "old sshd to exit" bash -c "! [ -d /proc/$old ]"
  fi
fi
[ $CONF_CHANGED = 1 ] && install -m 0600 "$TMP" "$DIR/sshd_config"

if [ $UP = 1 ]; then
  log "sshd already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
elif port_busy; then
  if ssh_ok; then
    log "an sshd not started by this script answers on 127.0.0.1:$PORT and accepts the key; using it"
  else
    die "port $PORT is in use by another program ($(ss -Hltnp "sport = :$PORT" | head -1))"
  fi
else
  # -E: log to a file (no syslog here); sshd daemonises and writes $PIDFILE
  /usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/sshd.log" || die "sshd failed to start"
  wait_for 10 "sshd pid file" pid_alive "$PIDFILE" sshd
  wait_for 10 "sshd to accept the key" ssh_ok
  log "sshd started (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
fi

# sftp must work (paramiko/asyncssh/rsync tests use it)
echo 'pwd' | timeout 15 sftp -q -b - -i "$KEY" -P "$PORT" -o BatchMode=yes -o IdentitiesOnly=yes \
  -o UserKnownHostsFile="$CLI/known_hosts" -o StrictHostKeyChecking=yes root@127.0.0.1 >/dev/null 2>&1 \
  || die "sftp to 127.0.0.1:$PORT failed"

# ---------------------------------------------------------------- environment for tests
mkdir -p "$RIG/env.d"
cat > "$RIG/env.d/ssh" <<EOF
CORRAL_TEST_SSH_HOST=127.0.0.1
CORRAL_TEST_SSH_PORT=$PORT
CORRAL_TEST_SSH_USER=root
CORRAL_TEST_SSH_KEY=$KEY
CORRAL_TEST_SSH_KNOWN_HOSTS=$CLI/known_hosts
CORRAL_TEST_SSH_CONFIG=$CLI/config
EOF
cat "$RIG"/env.d/* > "$RIG/env.tmp" && mv "$RIG/env.tmp" "$RIG/env"
log "sshd ready in $(since "$T_START")s; connect with:"
echo "  ssh -i $KEY -p $PORT -o StrictHostKeyChecking=no root@127.0.0.1 true"
echo "  ssh -F $CLI/config corral-rig true        # checks the host key against $CLI/known_hosts"
