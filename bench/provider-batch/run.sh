#!/bin/sh
# The cost side of provider batches: the same N jobs (default 10,000) through the live path and
# through the provider-batch path, against the stand-in Tests/peers/fake_llm.py. Prints the HTTP
# calls each path made, the wall time, and the price ratio at the provider's published 50 % batch
# discount (same request bodies, so the same tokens). Usage: bench/provider-batch/run.sh [N] [BIN]
set -eu
N=${1:-10000}
BIN=${2:-.build/release/llmspool}
[ -x "$BIN" ] || BIN=.build/debug/llmspool
HERE=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
trap 'kill $FAKE 2>/dev/null; rm -rf "$WORK"' EXIT
python3 -u "$HERE/Tests/peers/fake_llm.py" > "$WORK/port" & FAKE=$!
while [ ! -s "$WORK/port" ]; do sleep 0.1; done
PORT=$(head -1 "$WORK/port")
URL=http://127.0.0.1:$PORT/v1
stat() { python3 -c "import json,sys,urllib.request; print(json.load(urllib.request.urlopen('http://127.0.0.1:$PORT/stats'))['$1'])"; }
cat > "$WORK/conf.json" <<JSON
{"worker": {"providerBatch": {"enabled": true, "scanSeconds": 1, "pollSeconds": 1, "maxPollSeconds": 8}}}
JSON
# jobs: $1 = spool, $2 = deadline (or "")
jobs() {
    python3 - "$1" "$2" "$N" <<'PY'
import json, os, sys
spool, deadline, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for k in range(n):
    doc = {"jobId": "j%06d" % k, "prompt": "question %d" % k}
    if deadline:
        doc["deadline"] = deadline
    tmp = os.path.join(spool, "tmp", "j%06d.json" % k)
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.rename(tmp, os.path.join(spool, "new", "j%06d.json" % k))
PY
}
run() {  # $1 = name, $2 = deadline
    "$BIN" init "$WORK/$1" > /dev/null
    jobs "$WORK/$1" "$2"
    start=$(date +%s.%N)
    "$BIN" worker --spool "$WORK/$1" --config "$WORK/conf.json" --llm-url "$URL" --log-level warning 2> "$WORK/$1.log" & W=$!
    while [ "$(ls "$WORK/$1/done" | wc -l)" -lt "$N" ]; do sleep 0.2; done
    end=$(date +%s.%N)
    kill $W; wait $W || true
    echo "$end - $start" | bc
}
DEADLINE=$(date -u -d '+48 hours' +%Y-%m-%dT%H:%M:%SZ)
t_live=$(run live "")
live_calls=$(stat requests)
t_batch=$(run batched "$DEADLINE")
batch_http=$(stat batch_http)
echo "jobs: $N"
echo "live:  $live_calls chat calls, ${t_live}s"
echo "batch: $batch_http Batch API calls ($(stat files_uploaded) upload(s), $(stat batches_created) batch(es), the rest polls and downloads), $(stat batch_lines) lines run, ${t_batch}s (the stand-in runs a batch in 0.5 s; a provider takes up to 24 h)"
echo "price: batch / live = 0.50 (the provider's 50 % batch discount on the same tokens)"
