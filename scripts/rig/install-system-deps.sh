#!/bin/bash
# install-system-deps.sh - install the Debian packages Corral's test suite needs
# besides the schedulers, PostgreSQL and sshd (those have their own start-*.sh):
# headless Chromium + chromedriver (browser tests of the HTML report), fonts
# for stable screenshots, rsync and the OpenSSH client (SSH transport), git
# (provenance), make/python3-venv (the dev workflow) and small tools the rig
# scripts use. Run as root on Debian 12.
#
# Installs only what is missing (apt-get --no-install-recommends, no daemon is
# started by package scripts); with everything present it only asks dpkg once
# and takes well under a second.
#   --check   install nothing; list what is missing and exit 1 if anything is
# Knobs (environment):
#   CORRAL_RIG_EXTRA_PKGS="pkg ..."   more packages to install
set -euo pipefail

T_START=$EPOCHREALTIME
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }
log()  { printf '[rig deps  %5ss] %s\n' "$(since "$T_START")" "$*"; }
die()  { log "ERROR: $*"; exit 1; }
CHECK=0
for a in "$@"; do
  case "$a" in
    --check) CHECK=1;;
    -h|--help) sed -n '2,14p' "$0"; exit 0;;
    *) echo "install-system-deps.sh: unknown option $a" >&2; exit 2;;
  esac
done

RIG=/run/corral-rig
PKGS=(
  chromium chromium-driver                         # browser tests (headless)
  fonts-dejavu-core fonts-liberation               # text in headless screenshots
  rsync openssh-client                             # SSH transport / file staging
  git ca-certificates                              # provenance, HTTPS for pip
  make python3 python3-venv                        # make test / make venv
  procps psmisc iproute2 curl                      # ps, fuser, ss, HTTP probes
)
# shellcheck disable=SC2206  # word splitting is the point
[ -n "${CORRAL_RIG_EXTRA_PKGS:-}" ] && PKGS+=(${CORRAL_RIG_EXTRA_PKGS})

# one dpkg-query for all: prints "<name> <status>" for the known ones
declare -A STATUS=()
while read -r name st; do STATUS[$name]=$st; done < <(
  dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PKGS[@]}" 2>/dev/null || true)
MISSING=()
for p in "${PKGS[@]}"; do [ "${STATUS[$p]:-}" = installed ] || MISSING+=("$p"); done

if [ ${#MISSING[@]} -eq 0 ]; then
  log "all ${#PKGS[@]} packages already installed"
elif [ $CHECK = 1 ]; then
  log "missing: ${MISSING[*]}"; exit 1
else
  [ "$(id -u)" = 0 ] || die "must run as root to install: ${MISSING[*]}"
  log "installing: ${MISSING[*]}"
  T_I=$EPOCHREALTIME
  ADDED_POLICY=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then      # keep package scripts from starting daemons
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; ADDED_POLICY=1
  fi
  trap 'if [ $ADDED_POLICY = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
  export DEBIAN_FRONTEND=noninteractive
  APT=(apt-get -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends)
  LOGF=/tmp/corral-rig-deps-apt.log
  : > "$LOGF"
  # fresh machines have no package lists at all; otherwise try first, update on failure
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    log "no apt package lists; apt-get update"
    apt-get -q -o DPkg::Lock::Timeout=600 update >> "$LOGF" 2>&1 || log "warning: apt-get update failed"
  fi
  if ! "${APT[@]}" install "${MISSING[@]}" >> "$LOGF" 2>&1; then
    log "install failed; apt-get update and retry"
    apt-get -q -o DPkg::Lock::Timeout=600 update >> "$LOGF" 2>&1 || true
    "${APT[@]}" install "${MISSING[@]}" >> "$LOGF" 2>&1 || { tail -n 20 "$LOGF"; die "apt-get install failed (log: $LOGF)"; }
  fi
  log "install took $(since "$T_I")s"
fi

CHROMIUM=$(command -v chromium || true)
DRIVER=$(command -v chromedriver || true)
if [ -z "$CHROMIUM" ] || [ -z "$DRIVER" ]; then die "chromium/chromedriver not on PATH after install"; fi
log "$("$DRIVER" --version 2>/dev/null | cut -d' ' -f1,2) at $DRIVER; chromium at $CHROMIUM (as root it needs --no-sandbox)"

# ---------------------------------------------------------------- environment for tests
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$RIG/env.d"
  printf 'CORRAL_TEST_CHROMIUM=%s\nCORRAL_TEST_CHROMEDRIVER=%s\n' "$CHROMIUM" "$DRIVER" > "$RIG/env.d/browser"
  cat "$RIG"/env.d/* > "$RIG/env.tmp" && mv "$RIG/env.tmp" "$RIG/env"
fi
log "system dependencies ready in $(since "$T_START")s"
