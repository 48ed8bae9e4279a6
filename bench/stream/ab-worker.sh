#!/usr/bin/env bash
# Non-streaming throughput before and after streaming: bench/worker/run.sh (the worker against the
# nginx stand-in, N jobs) in this tree and in OLD (a worktree of the commit before the stream merge),
# ROUNDS times each, alternating (this, old, old, this, …) so that a drifting load weighs on both;
# prints every run's jobs/s (and the C claim+finish loop's, measured in the same run) and the ratio
# of the means. Usage: bench/stream/ab-worker.sh OLD_TREE   (env: ROUNDS=3 N=20000; BENCH_DIR=/dev/shm/DIR
# runs both on tmpfs, taking a shared disk out of the comparison)
# e.g. git worktree add --detach ../old "$(git log --merges --grep="Merge branch 'stream'" --format=%H -1)^1"
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OLD=$(cd "$1" && pwd)
ROUNDS=${ROUNDS:-3}
export N=${N:-20000}
one() {  # $1: tree → "worker_rate c_rate"
    # Each tree's own bench/worker/run.sh and nginx.conf (unchanged by the stream work).
    bash "$1/bench/worker/run.sh" 2>/dev/null | awk -F'|' '/llmspool worker, end to end/ {w=$3} /C claim \+ finish, one fsync/ {c=$3} END {gsub(/ /,"",w); gsub(/ /,"",c); print w, c}'
}
new=(); old=()
for r in $(seq 1 "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then a=$(one "$ROOT"); b=$(one "$OLD"); else b=$(one "$OLD"); a=$(one "$ROOT"); fi
    echo "round $r: this tree $a | old $b (jobs/s, C claim+finish jobs/s) load $(cut -d' ' -f1 /proc/loadavg)" >&2
    new+=("${a%% *}"); old+=("${b%% *}")
done
python3 - "${new[*]}" "${old[*]}" <<'PY'
import sys
n = [float(x) for x in sys.argv[1].split()]; o = [float(x) for x in sys.argv[2].split()]
mn, mo = sum(n) / len(n), sum(o) / len(o)
print("| tree | runs (jobs/s) | mean |")
print("|---|---|--:|")
print("| with streaming | %s | %.0f |" % (", ".join("%.0f" % x for x in n), mn))
print("| before streaming | %s | %.0f |" % (", ".join("%.0f" % x for x in o), mo))
print("| ratio with / before | | %.3f× |" % (mn / mo))
PY
