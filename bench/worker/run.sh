#!/usr/bin/env bash
# End-to-end worker throughput: claim → HTTP call → durable result → rename, against an instant
# stand-in LLM (nginx returning a canned completion), beside the spool's C claim+finish loop
# (bench/c/ref.c) measured in the same run on the same disk.
#
# The peer is a Celery worker on kombu's filesystem broker running no-op tasks (no HTTP, no fsync),
# when `celery` is installed (pip install celery); it lists its whole queue per message, so its
# rate falls as the queue grows: N_CELERY (default 3000) is stated in the table.
#
# Usage: bench/worker/run.sh   (env: N=20000 jobs, CONCURRENCY=256, N_CELERY=3000, BENCH_DIR=bench/out)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${N:-20000}
N_CELERY=${N_CELERY:-3000}
CONCURRENCY=${CONCURRENCY:-256}
BASE=${BENCH_DIR:-$ROOT/bench/out}/worker-$(date +%s)
mkdir -p "$BASE"

swift build -c release --product llmspool --scratch-path "$ROOT/.build-release" >&2
BIN="$ROOT/.build-release/release/llmspool"
gcc -O2 -o "$BASE/ref" "$ROOT/bench/c/ref.c"

# The stand-in LLM.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$BASE/nginx/tmp"
sed "s/PORT/$PORT/" "$ROOT/bench/worker/nginx.conf" > "$BASE/nginx/nginx.conf"
nginx -p "$BASE/nginx" -c "$BASE/nginx/nginx.conf" &
NGINX=$!
trap 'kill $NGINX 2>/dev/null || true' EXIT
sleep 0.5

# Jobs (not timed), written out before the clock starts.
"$BIN" init "$BASE/spool" >/dev/null
python3 - "$BASE/jobs" "$N" <<'PY'
import json, os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
for k in range(n):
    with open(os.path.join(d, "j%06d.json" % k), "w") as f:
        json.dump({"prompt": "Summarise item %d in one line." % k, "tenantId": "t%d" % (k % 4)}, f)
PY
ls "$BASE/jobs" | sed "s|^|$BASE/jobs/|" | xargs -n 1000 "$BIN" submit --spool "$BASE/spool" --volatile > /dev/null
sync

start=$(date +%s.%N)
"$BIN" worker --spool "$BASE/spool" --llm-url "http://127.0.0.1:$PORT/v1" --concurrency "$CONCURRENCY" --log-level warning &
WORKER=$!
while [ "$(ls "$BASE/spool/done" | wc -l)" -lt "$N" ]; do sleep 0.05; done
end=$(date +%s.%N)
kill -TERM $WORKER; wait $WORKER || true
worker_rate=$(python3 -c "print(round($N/($end-$start)))")

# The C claim+finish loop (one fsync per result) on a fresh spool, same disk, same run.
c_rate=$("$BASE/ref" claim-finish "$BASE/c-finish" 3000 | sed -n 's/.*jobs\/s=\([0-9]*\).*/\1/p')
c_batch=$("$BASE/ref" finish-syncfs "$BASE/c-fsyncfs" 10000 64 | sed -n 's/.*jobs\/s=\([0-9]*\).*/\1/p')

celery_rate=""
if command -v celery >/dev/null; then
    celery_rate=$(python3 "$ROOT/bench/worker/celery_bench.py" "$BASE/celery" "$N_CELERY" | sed -n 's/.*tasks\/s=\([0-9]*\).*/\1/p')
fi

echo "| measure | jobs/s |"
echo "|---|--:|"
echo "| llmspool worker, end to end (N=$N, concurrency $CONCURRENCY) | $worker_rate |"
echo "| C claim + finish, one fsync per result | $c_rate |"
echo "| C claim + finish, batches of 64, one syncfs | $c_batch |"
python3 -c "print('| worker / C claim+finish | %.2f× |' % ($worker_rate/$c_rate)); print('| worker / C batched | %.2f× |' % ($worker_rate/$c_batch))"
if [ -n "$celery_rate" ]; then
    echo "| Celery worker, filesystem broker, no-op tasks (N=$N_CELERY) | $celery_rate |"
    python3 -c "print('| worker / Celery | %.1f× |' % ($worker_rate/$celery_rate))"
fi
(rm -rf "$BASE" &)
