#!/bin/bash
# install-system-deps.sh - install the Debian packages Corral's test suite needs
# besides the schedulers, PostgreSQL and sshd (those have their own start-*.sh):
# headless Chromium + chromedriver (browser tests of the HTML report; libatomic1
# for the node driver that the playwright wheel runs), fonts
# for stable screenshots, rsync and the OpenSSH client (SSH transport), git
# (provenance), rclone (the datapipe example's publish-to-remote test, local
# backend only), make/python3-venv (the dev workflow) and small tools the rig
# scripts use. Run as root on Debian 12.
#
# Installs only what is missing (apt-get --no-install-recommends, no daemon is
# started by package scripts); with everything present it only asks dpkg once
# and takes well under a second.
#   --check   install nothing; list what is missing and exit 1 if anything is
# Knobs (environment):
#   CORRAL_RIG_EXTRA_PKGS="pkg ..."   more packages to install
set -euo pipefail
RIG_TAG=deps
. "$(dirname "$0")/lib.sh"

die()  { log "ERROR: $*"; exit 1; }
CHECK=0
for a in "$@"; do
  case "$a" in
    --check) CHECK=1;;
    -h|--help) sed -n '2,16p' "$0"; exit 0;;
    *) echo "install-system-deps.sh: unknown option $a" >&2; exit 2;;
  esac
done

RIG=/run/corral-rig
PKGS=(
  chromium chromium-driver                         # browser tests (headless)
  libatomic1                                       # the node binary inside the playwright wheel
  fonts-dejavu-core fonts-liberation               # text in headless screenshots
  rsync openssh-client                             # SSH transport / file staging
  git ca-certificates                              # provenance, HTTPS for pip
  rclone                                           # datapipe publish to a remote
  make python3 python3-venv                        # make test / make venv
  procps psmisc iproute2 curl                      # ps, fuser, ss, HTTP probes
  openmpi-bin libopenmpi-dev                       # MPI tasks (mpirun, mpicc; mpi4py loads libmpi)
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
  apt_install /tmp/corral-rig-deps-apt.log "${MISSING[@]}"
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
