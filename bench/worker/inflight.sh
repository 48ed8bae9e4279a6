#!/usr/bin/env bash
# 10,000 jobs against a stand-in LLM that answers each call after 30 s (Tests/peers/fake_llm.py):
# all in flight at once. Reports the worker's peak RSS, its CPU time while waiting, and the total time.
#
# Usage: bench/worker/inflight.sh   (env: N=10000, LATENCY_MS=30000)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${N:-10000}
LATENCY_MS=${LATENCY_MS:-30000}
BASE=${BENCH_DIR:-$ROOT/bench/out}/inflight-$(date +%s)
mkdir -p "$BASE"
# The descriptor limit systemd gives the worker (LimitNOFILE=65536 in systemd/llmspool-worker.service);
# raising the hard limit needs CAP_SYS_RESOURCE (not granted in this sandbox: 20,000 here), else the hard limit is used.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

swift build -c release --product llmspool --scratch-path "$ROOT/.build-release" >&2
BIN="$ROOT/.build-release/release/llmspool"

python3 -u "$ROOT/Tests/peers/fake_llm.py" > "$BASE/port" &
LLM=$!
trap 'kill -9 $LLM 2>/dev/null || true' EXIT
while [ ! -s "$BASE/port" ]; do sleep 0.1; done
PORT=$(head -1 "$BASE/port")

"$BIN" init "$BASE/spool" >/dev/null
python3 - "$BASE/jobs" "$N" "$LATENCY_MS" <<'PY'
import json, os, sys
d, n, ms = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(d, exist_ok=True)
for k in range(n):
    with open(os.path.join(d, "j%06d.json" % k), "w") as f:
        json.dump({"prompt": "fake:latency=%s,key=j%d" % (ms, k)}, f)
PY
ls "$BASE/jobs" | sed "s|^|$BASE/jobs/|" | xargs -n 1000 "$BIN" submit --spool "$BASE/spool" --volatile > /dev/null

start=$(date +%s.%N)
"$BIN" worker --spool "$BASE/spool" --llm-url "http://127.0.0.1:$PORT/v1" --concurrency "$N" --log-level warning &
W=$!
sleep 10
cpu_a=$(awk '{print $14+$15}' /proc/$W/stat)
sleep 10
cpu_b=$(awk '{print $14+$15}' /proc/$W/stat)
while [ "$(ls "$BASE/spool/done" | wc -l)" -lt "$N" ]; do
    sleep 0.2
    if [ "$(python3 -c "print(int($(date +%s.%N) - $start))")" -gt 120 ]; then echo "timed out" >&2; break; fi
done
end=$(date +%s.%N)
hwm=$(awk '/VmHWM/{print $2}' /proc/$W/status)
kill -TERM $W; wait $W || true
ticks=$(getconf CLK_TCK)
echo "| measure | value |"
echo "|---|--:|"
echo "| jobs, all in flight at once | $N (stand-in answers after ${LATENCY_MS} ms) |"
echo "| all done after | $(python3 -c "print('%.1f s' % ($end-$start))") |"
echo "| worker peak RSS | $((hwm / 1024)) MiB |"
echo "| worker CPU while waiting (10 s window) | $(python3 -c "print('%.0f ms' % (($cpu_b-$cpu_a)*1000/$ticks))") |"
echo "| done/ | $(ls "$BASE/spool/done" | wc -l) |"
(rm -rf "$BASE" &)
