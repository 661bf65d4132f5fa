#!/bin/bash
# down.sh - stop the test rig that up.sh started: the test sshd, PostgreSQL,
# Grid Engine and SLURM, in that order. Each stop script stops only the daemons
# its start script started (PID files under /run/corral-rig); daemons that were
# already running before (started by someone else) are left alone. Installed
# packages, cluster state and databases are kept.
#
#   scripts/rig/down.sh               everything
#   scripts/rig/down.sh sshd postgres only these (sshd postgres sge slurm)
set -uo pipefail
RIG_TAG=down
. "$(dirname "$0")/lib.sh"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ALL=(sshd postgres sge slurm)

case "${1:-}" in -h|--help) sed -n '2,9p' "$0"; exit 0;; esac
[ "$(id -u)" = 0 ] || { echo "down.sh: must run as root" >&2; exit 1; }
WANT=("$@"); [ ${#WANT[@]} -gt 0 ] || WANT=("${ALL[@]}")
for c in "${WANT[@]}"; do
  case " ${ALL[*]} " in *" $c "*) ;; *) echo "down.sh: unknown component '$c' (known: ${ALL[*]})" >&2; exit 2;; esac
done

rc=0
for c in "${ALL[@]}"; do
  case " ${WANT[*]} " in *" $c "*) ;; *) continue;; esac
  "$HERE/stop-$c.sh" || { log "stop-$c.sh failed"; rc=1; }
done
log "done"
exit $rc
