#!/bin/bash
# verify.sh - quick self-checks of the test rig brought up by up.sh, reading
# /run/corral-rig/env like the test suite does. One PASS/FAIL/SKIP line per
# check (with seconds) and a closing "N passed, N failed" line; exit 1 if any
# check failed. Takes about 10-20 s.
#
#   scripts/rig/verify.sh                      all: slurm sge postgres ssh browser
#   scripts/rig/verify.sh postgres ssh         only these
#
# Python checks (SQLAlchemy URL, asyncssh) use $CORRAL_PYTHON, else the repo's
# .venv/bin/python, else python3; they are skipped when the module is missing.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ENVFILE=/run/corral-rig/env
ALL=(slurm sge postgres ssh browser)
case "${1:-}" in -h|--help) sed -n '2,11p' "$0"; exit 0;; esac
WANT=("$@"); [ ${#WANT[@]} -gt 0 ] || WANT=("${ALL[@]}")
for c in "${WANT[@]}"; do
  case " ${ALL[*]} " in *" $c "*) ;; *) echo "verify.sh: unknown component '$c' (known: ${ALL[*]})" >&2; exit 2;; esac
done
PY=${CORRAL_PYTHON:-}
[ -n "$PY" ] || { [ -x "$REPO/.venv/bin/python" ] && PY=$REPO/.venv/bin/python; } || PY=python3

PASS=0; FAIL=0; SKIP=0
secs() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }
check() { # name command... : PASS when the command succeeds
  local name=$1 t0=$EPOCHREALTIME out; shift
  if out=$("$@" 2>&1); then PASS=$((PASS+1)); echo "PASS [$(secs "$t0")s] $name"
  else FAIL=$((FAIL+1)); echo "FAIL [$(secs "$t0")s] $name"; [ -n "$out" ] && printf '%s\n' "$out" | tail -n 5 | sed 's/^/       | /'
  fi; }
skip() { SKIP=$((SKIP+1)); echo "SKIP        $*"; }
has_py() { "$PY" -c "import $1" >/dev/null 2>&1; }

W=$(mktemp -d /tmp/corral-rig-verify.XXXXXX); chmod 755 "$W"
CHILD=
cleanup() { [ -n "$CHILD" ] && kill "$CHILD" 2>/dev/null; cd /; rm -rf "$W"; }
trap cleanup EXIT
cd "$W" || exit 1

if [ -r "$ENVFILE" ]; then
  set -a
  # shellcheck disable=SC1090
  . "$ENVFILE"
  set +a
  check "env file $ENVFILE readable" true
else
  check "env file $ENVFILE exists (run scripts/rig/up.sh)" false
fi
want() { case " ${WANT[*]} " in *" $1 "*) return 0;; *) return 1;; esac; }

# ---------------------------------------------------------------- SLURM
if want slurm; then
  if [ -z "${CORRAL_TEST_SLURM:-}" ]; then
    check "slurm: CORRAL_TEST_SLURM set in env (start-slurm.sh ran)" false
  else
    check "slurm: scontrol ping -> UP" bash -c "scontrol ping | grep -q 'is UP'"
    check "slurm: node usable (sinfo)" bash -c "sinfo -h -o %T | grep -Eq '^(idle|mixed|allocated)'"
    # shellcheck disable=SC2016  # expanded by the job
    printf '#!/bin/bash\necho "hello from $SLURM_JOB_ID"\n' > job.sh
    t0=$EPOCHREALTIME
    id=$(timeout 120 sbatch --parsable --wait -o slurm-%j.out -J corral-verify job.sh 2>&1); rc=$?
    check "slurm: sbatch --wait trivial job -> exit 0 (job $id, $(secs "$t0")s)" [ "$rc" = 0 ]
    check "slurm: job output written" grep -qx "hello from $id" "slurm-$id.out"
    if [ "${CORRAL_TEST_SLURM_ACCOUNTING:-}" = dbd ]; then SACCT=(sacct); else SACCT=(sacct -c); fi
    check "slurm: ${SACCT[*]} records COMPLETED" bash -c "for i in \$(seq 1 50); do
        [ \"\$(${SACCT[*]} -n -X -P -j $id -o State 2>/dev/null | head -1)\" = COMPLETED ] && exit 0; sleep 0.2; done; exit 1"
  fi
fi

# ---------------------------------------------------------------- Grid Engine
if want sge; then
  if [ -z "${CORRAL_TEST_SGE:-}" ]; then
    check "sge: CORRAL_TEST_SGE set in env (start-sge.sh ran)" false
  else
    check "sge: SGE_ROOT=${SGE_ROOT:-} SGE_CELL=${SGE_CELL:-} is a cell" test -d "${SGE_ROOT:-/nonexistent}/${SGE_CELL:-x}/common"
    check "sge: queue all.q up (qstat -f, no state flags)" bash -c \
      "timeout 10 qstat -f | awk '/^all.q@/ {found=1; if (\$6 != \"\") bad=1} END {exit !(found && !bad)}'"
    # shellcheck disable=SC2016  # expanded by the job
    printf '#!/bin/bash\necho "hello from $JOB_ID"\n' > sge.sh
    printf '#!/bin/bash\nexit 3\n' > sge3.sh
    chmod +x sge.sh sge3.sh
    t0=$EPOCHREALTIME
    out=$(timeout 120 qsub -sync y -cwd -j y -o sge.out -N corral-verify sge.sh 2>&1); rc=$?
    sid=$(sed -n 's/^Your job \([0-9]*\) .*/\1/p' <<<"$out")
    check "sge: qsub -sync y trivial job -> exit 0 (job $sid, $(secs "$t0")s)" [ "$rc" = 0 ]
    check "sge: job output written" grep -qx "hello from $sid" sge.out
    t0=$EPOCHREALTIME
    timeout 120 qsub -sync y -cwd -j y -o /dev/null sge3.sh >/dev/null 2>&1; rc=$?
    check "sge: qsub -sync y returns the job's exit code 3 (got $rc, $(secs "$t0")s)" [ "$rc" = 3 ]
    check "sge: qacct has the job" bash -c "for i in \$(seq 1 50); do
        qacct -j $sid 2>/dev/null | grep -Eq '^exit_status +0' && exit 0; sleep 0.2; done; exit 1"
  fi
fi

# ---------------------------------------------------------------- PostgreSQL
if want postgres; then
  if [ -z "${CORRAL_TEST_PG_URL:-}" ]; then
    check "postgres: CORRAL_TEST_PG_URL set in env (start-postgres.sh ran)" false
  else
    # postgresql+psycopg://USER:PASS@HOST:PORT/DB
    rest=${CORRAL_TEST_PG_URL#*://}; cred=${rest%%@*}; hostpart=${rest#*@}
    PGU=${cred%%:*}; PGPW=${cred#*:}; hp=${hostpart%%/*}; PGDB=${hostpart#*/}; PGH=${hp%%:*}; PGP=${hp##*:}
    pq() { PGPASSWORD=$PGPW PGCONNECT_TIMEOUT=5 psql -X -Atq -v ON_ERROR_STOP=1 -h "$PGH" -p "$PGP" -U "$PGU" -d "$PGDB" "$@"; }
    pg_whoami() { [ "$(pq -c "SELECT current_user || '/' || current_database()")" = "$PGU/$PGDB" ]; }
    check "postgres: psql $PGU@$PGH:$PGP/$PGDB with the password" pg_whoami
    check "postgres: $PGU can create and drop a table in $PGDB" \
      pq -c 'CREATE TABLE corral_rig_probe (x int)' -c 'INSERT INTO corral_rig_probe VALUES (1)' -c 'DROP TABLE corral_rig_probe'
    check "postgres: TCP listener on 127.0.0.1:$PGP only" bash -c \
      "l=\$(ss -Hltn 'sport = :$PGP' | awk '{print \$4}'); [ -n \"\$l\" ] && ! grep -qv '^127\\.0\\.0\\.1:' <<<\"\$l\""
    check "postgres: unix socket in /var/run/postgresql" test -S "/var/run/postgresql/.s.PGSQL.$PGP"
    if has_py sqlalchemy && has_py psycopg; then
      check "postgres: SQLAlchemy create_engine(CORRAL_TEST_PG_URL) ($PY)" "$PY" -c '
import os, sqlalchemy as sa
e = sa.create_engine(os.environ["CORRAL_TEST_PG_URL"])
with e.connect() as c:
    assert c.execute(sa.text("select 1")).scalar() == 1'
    else
      skip "postgres: SQLAlchemy check ($PY lacks sqlalchemy/psycopg)"
    fi
  fi
fi

# ---------------------------------------------------------------- sshd
if want ssh; then
  if [ -z "${CORRAL_TEST_SSH_KEY:-}" ]; then
    check "ssh: CORRAL_TEST_SSH_KEY set in env (start-sshd.sh ran)" false
  else
    K=$CORRAL_TEST_SSH_KEY; P=$CORRAL_TEST_SSH_PORT; H=${CORRAL_TEST_SSH_HOST:-127.0.0.1}; U=${CORRAL_TEST_SSH_USER:-root}
    KH=$CORRAL_TEST_SSH_KNOWN_HOSTS
    SSHO=(-o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=5 -o UserKnownHostsFile="$KH" -o StrictHostKeyChecking=yes)
    check "ssh: ssh -i KEY -p $P -o StrictHostKeyChecking=no $U@$H true" \
      timeout 20 ssh -i "$K" -p "$P" -o StrictHostKeyChecking=no -o BatchMode=yes "$U@$H" true
    check "ssh: host key matches $KH; remote command runs" bash -c \
      "[ \"\$(timeout 20 ssh ${SSHO[*]@Q} -i '$K' -p '$P' '$U@$H' 'echo \$((6*7))')\" = 42 ]"
    check "ssh: ssh -F \$CORRAL_TEST_SSH_CONFIG corral-rig" timeout 20 ssh -F "${CORRAL_TEST_SSH_CONFIG:-/dev/null}" corral-rig true
    head -c 100000 /dev/urandom > payload
    check "ssh: sftp put/get round trip" bash -c \
      "printf 'put payload $W/sftp-up\nget $W/sftp-up sftp-down\nrm $W/sftp-up\n' | timeout 30 sftp -q -b - ${SSHO[*]@Q} -i '$K' -P '$P' '$U@$H' >/dev/null && cmp payload sftp-down"
    check "ssh: rsync over ssh" bash -c \
      "timeout 30 rsync -a -e \"ssh ${SSHO[*]} -i $K -p $P\" payload '$U@$H:$W/rsync-up' && cmp payload rsync-up"
    # what the server offers once the key is withheld: public key only, no password
    ssh_methods() { timeout 20 ssh -v "${SSHO[@]}" -o PubkeyAuthentication=no -p "$P" "$U@$H" true 2>&1 \
                      | tr -d '\r' | sed -n 's/.*Authentications that can continue: //p' | sort -u; }
    check "ssh: server offers publickey only (no password)" bash -c "[ \"\$1\" = publickey ]" _ "$(ssh_methods)"
    check "ssh: listener on 127.0.0.1:$P only" bash -c \
      "l=\$(ss -Hltn 'sport = :$P' | awk '{print \$4}'); [ -n \"\$l\" ] && ! grep -qv '^127\\.0\\.0\\.1:' <<<\"\$l\""
    if has_py asyncssh; then
      check "ssh: asyncssh connect + sftp ($PY)" "$PY" -c '
import asyncio, os, asyncssh
async def main():
    e = os.environ
    async with asyncssh.connect(e["CORRAL_TEST_SSH_HOST"], port=int(e["CORRAL_TEST_SSH_PORT"]),
            username=e["CORRAL_TEST_SSH_USER"], client_keys=[e["CORRAL_TEST_SSH_KEY"]],
            known_hosts=e["CORRAL_TEST_SSH_KNOWN_HOSTS"]) as c:
        r = await c.run("echo ok", check=True)
        assert r.stdout.strip() == "ok"
        async with c.start_sftp_client() as s:
            assert await s.exists("/")
asyncio.run(main())'
    else
      skip "ssh: asyncssh check ($PY lacks asyncssh)"
    fi
  fi
fi

# ---------------------------------------------------------------- headless Chromium
if want browser; then
  CH=${CORRAL_TEST_CHROMIUM:-$(command -v chromium || true)}
  CD=${CORRAL_TEST_CHROMEDRIVER:-$(command -v chromedriver || true)}
  if [ -z "$CH" ] || [ -z "$CD" ]; then
    check "browser: chromium and chromedriver installed (install-system-deps.sh)" false
  else
    printf '<html><body style="font-family:sans-serif"><h1>Corral rig</h1></body></html>' > page.html
    check "browser: headless chromium screenshot" bash -c \
      "timeout 60 '$CH' --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars \
         --window-size=400,300 --screenshot='$W/shot.png' 'file://$W/page.html' >/dev/null 2>&1;
       [ \"\$(head -c 8 '$W/shot.png' | od -An -tx1 | tr -d ' ')\" = 89504e470d0a1a0a ]"
    check "browser: headless chromium --dump-dom" bash -c \
      "timeout 60 '$CH' --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --dump-dom 'file://$W/page.html' 2>/dev/null | grep -q 'Corral rig'"
    port=$(( 20000 + RANDOM % 20000 ))
    "$CD" --port="$port" >/dev/null 2>&1 & CHILD=$!
    check "browser: chromedriver /status ready" bash -c \
      "for i in \$(seq 1 50); do curl -sf http://127.0.0.1:$port/status | grep -q '\"ready\": *true' && exit 0; sleep 0.2; done; exit 1"
    kill "$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; CHILD=
  fi
fi

[ $SKIP -gt 0 ] && echo "($SKIP optional checks skipped)"
echo "$PASS passed, $FAIL failed"
[ $FAIL = 0 ]
