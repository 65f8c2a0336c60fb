#!/usr/bin/env bash
# Reproduces every figure in BENCHMARKS.md, in order, into one log:
#   bash benches/run-all.sh [LOG]        (~17 minutes on the 2-core machine kind)
# Needs only cargo; the load benchmark installs Debian's redis-server for the
# peer if it is missing, the segments benchmark PyPI's duckdb (pip). Loopback only; every server it starts is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
log=${1:-bench-results.txt}
: > "$log"
run() {
    echo "### $*" | tee -a "$log"
    "$@" 2>&1 | grep -vE '^\s+(Compiling|Finished|Running)' | tee -a "$log"
}
run cargo bench --bench core -- --warm-up-time 1 --measurement-time 4
run cargo bench --bench load
run cargo bench --bench load -- --fsync off --no-peer
run cargo bench --bench load -- --connections 16 --seconds 5 --no-peer
run cargo bench --bench load -- --connections 16 --seconds 5 --no-peer --fsync off
run cargo bench --bench load -- --profiles 10000000 --cohort-size 1000000 --extra-cohorts 97 --seconds 3
run cargo bench --bench isolation
run cargo bench --bench segments
run cargo bench --bench export
run cargo bench --bench import
echo "all figures in $log"
