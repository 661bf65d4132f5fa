# shellcheck shell=sh
# sge-env.sh - environment for the Grid Engine cell started by start-sge.sh.
# Source it (POSIX sh or bash):   . scripts/rig/sge-env.sh
# Debian's qsub/qstat/... wrappers in /usr/bin find the cell on their own (via
# /etc/default/gridengine); these variables are for tools that do not (DRMAA,
# sge_* daemons, tests that build the paths themselves).
SGE_ROOT=${SGE_ROOT:-/var/lib/gridengine}
SGE_CELL=${SGE_CELL:-default}
SGE_QMASTER_PORT=${SGE_QMASTER_PORT:-6444}
SGE_EXECD_PORT=${SGE_EXECD_PORT:-6445}
export SGE_ROOT SGE_CELL SGE_QMASTER_PORT SGE_EXECD_PORT
# libdrmaa (package gridengine-drmaa1.0), for the `drmaa` Python package. Loading
# it into Python needs LD_PRELOAD=/lib/x86_64-linux-gnu/libjemalloc.so.2 or
# GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384 (not set here).
if [ -z "${DRMAA_LIBRARY_PATH:-}" ] && [ -e /usr/lib/gridengine-drmaa/lib/libdrmaa.so.1.0 ]; then
  DRMAA_LIBRARY_PATH=/usr/lib/gridengine-drmaa/lib/libdrmaa.so.1.0
  export DRMAA_LIBRARY_PATH
fi
