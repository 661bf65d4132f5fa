#!/bin/bash
# up.sh - bring up the local test rig for Corral's test suite: system packages,
# SLURM, Grid Engine, PostgreSQL and the test sshd (scripts/rig/start-*.sh),
# then print a summary table and write /run/corral-rig/env for the tests.
#
#   scripts/rig/up.sh                 everything
#   scripts/rig/up.sh postgres sshd   only these (deps slurm sge postgres sshd)
#
# Safe to run repeatedly: every start script detects what is already running.
# A component that fails does not stop the others; it is reported in the table
# and left out of the env file (so its tests skip). Exit status is 0 unless
# CORRAL_REQUIRE_CLUSTERS=1 and some component failed (use that in CI).
#
# Environment file /run/corral-rig/env: KEY=value lines, no quoting, e.g.
#   CORRAL_TEST_PG_URL, CORRAL_TEST_SSH_KEY, CORRAL_TEST_SSH_PORT, SGE_ROOT, SGE_CELL
# Load it in a shell with:  set -a; . /run/corral-rig/env; set +a
#
# Knobs: CORRAL_RIG_SKIP="sge slurm" (components to skip),
#        CORRAL_RIG_COMPONENT_TIMEOUT=1200 (seconds per component),
#        plus those of each start script (CORRAL_RIG_SLURM_*, CORRAL_RIG_SGE_*, ...).
set -uo pipefail
RIG_TAG=up
. "$(dirname "$0")/lib.sh"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RIG=/run/corral-rig
LOGS=$RIG/logs
ALL=(deps slurm sge postgres sshd)
STEP_TIMEOUT=${CORRAL_RIG_COMPONENT_TIMEOUT:-1200}

case "${1:-}" in -h|--help) sed -n '2,21p' "$0"; exit 0;; esac
[ "$(id -u)" = 0 ] || { echo "up.sh: must run as root (it installs packages and starts daemons)" >&2; exit 1; }

WANT=("$@"); [ ${#WANT[@]} -gt 0 ] || WANT=("${ALL[@]}")
for c in "${WANT[@]}"; do
  case " ${ALL[*]} " in *" $c "*) ;; *) echo "up.sh: unknown component '$c' (known: ${ALL[*]})" >&2; exit 2;; esac
done

script_of() { case "$1" in deps) echo install-system-deps.sh;; *) echo "start-$1.sh";; esac; }
# the env.d fragment(s) each component writes
frag_of() { case "$1" in deps) echo browser;; postgres) echo postgres;; sshd) echo ssh;; *) echo "$1";; esac; }

mkdir -p "$LOGS" "$RIG/env.d"
declare -A STATUS=() SECS=() DETAIL=()
for c in "${ALL[@]}"; do
  case " ${WANT[*]} " in *" $c "*) ;; *) continue;; esac
  case " ${CORRAL_RIG_SKIP:-} " in *" $c "*) STATUS[$c]=skipped; SECS[$c]=-; DETAIL[$c]="CORRAL_RIG_SKIP"; continue;; esac
  log "---- $c ($(script_of "$c"))"
  t0=$EPOCHREALTIME
  timeout --kill-after=10 "$STEP_TIMEOUT" "$HERE/$(script_of "$c")" 2>&1 | tee "$LOGS/$c.log"
  rc=${PIPESTATUS[0]}
  SECS[$c]=$(since "$t0")
  if [ "$rc" = 0 ]; then
    STATUS[$c]=ok
    case "$c" in
      slurm)    DETAIL[$c]="$(sinfo -h -o '%P %T %c cpus' 2>/dev/null | head -1), accounting $(sed -n 's/^CORRAL_TEST_SLURM_ACCOUNTING=//p' "$RIG/env.d/slurm")";;
      sge)      DETAIL[$c]="$(timeout 10 qstat -f 2>/dev/null | awk '/^all.q@/ {print $1, $3 " slots"; exit}')";;
      postgres) DETAIL[$c]="$(sed -n 's/^CORRAL_TEST_PG_URL=//p' "$RIG/env.d/postgres")";;
      sshd)     DETAIL[$c]="root@127.0.0.1:$(sed -n 's/^CORRAL_TEST_SSH_PORT=//p' "$RIG/env.d/ssh") key $(sed -n 's/^CORRAL_TEST_SSH_KEY=//p' "$RIG/env.d/ssh")";;
      deps)     DETAIL[$c]="chromium $(chromium --version 2>/dev/null | awk '{print $2}')";;
    esac
  else
    STATUS[$c]=FAILED
    [ "$rc" = 124 ] && DETAIL[$c]="timed out after ${STEP_TIMEOUT}s; "
    DETAIL[$c]="${DETAIL[$c]:-}$(grep -m1 'ERROR' "$LOGS/$c.log" | sed 's/^\[[^]]*\] //' | cut -c1-70) (log: $LOGS/$c.log)"
    # a failed component must not advertise itself to the tests
    rm -f "$RIG/env.d/$(frag_of "$c")"
  fi
done

# the env file: what every component that is up wrote into env.d
cat "$RIG"/env.d/* > "$RIG/env.tmp" 2>/dev/null; mv "$RIG/env.tmp" "$RIG/env"

echo
printf '%-9s %-8s %7s  %s\n' component status seconds detail
printf '%-9s %-8s %7s  %s\n' --------- ------ ------- ------
failed=()
for c in "${ALL[@]}"; do
  [ -n "${STATUS[$c]:-}" ] || continue
  printf '%-9s %-8s %7s  %s\n' "$c" "${STATUS[$c]}" "${SECS[$c]}" "${DETAIL[$c]:-}"
  [ "${STATUS[$c]}" = FAILED ] && failed+=("$c")
done
echo
echo "test environment: $RIG/env   (load: set -a; . $RIG/env; set +a)"
sed 's/^/  /' "$RIG/env"
echo
if [ ${#failed[@]} -gt 0 ]; then
  log "FAILED: ${failed[*]} - their tests will be skipped"
  if [ "${CORRAL_REQUIRE_CLUSTERS:-0}" = 1 ]; then
    log "CORRAL_REQUIRE_CLUSTERS=1: failing"; exit 1
  fi
  exit 0
fi
log "rig up in $(since "$T_START")s"
