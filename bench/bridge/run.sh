#!/usr/bin/env bash
# Benchmarks the Kafka bridge against librdkafka's mock cluster (Tests/peers/kafka_mock.c, 3 brokers),
# everything in the same run, and prints a Markdown table with ratios and the targets of issue 6:
#   spool → Kafka   `llmspool bridge --jobs-out` (claim, produce, rename to forwarded/ on the report)
#                   beside bench/bridge/ref.c (read each file, produce with an idempotent producer,
#                   rename it on its delivery report) and `kcat -P` of the same messages from one
#                   file (the broker-side ceiling)
#   Kafka → spool   `llmspool bridge --jobs-in` (durable, a group commit per consumed batch) beside
#                   bench/c/ref.c enqueue-durable (the single-job durable enqueue loop in C)
# Each side is timed from its start until every job is where it should be (the directory is counted
# every 50 ms by the same poller for the bridge and the C reference; kcat is timed as a command),
# except Kafka → spool, timed from the first job in new/: before it the consumer joins its group,
# which on the mock takes seconds whatever the load; that wait is printed apart.
#
# Files are created and never deleted while measuring: on ext4 without a journal, creating files
# soon after a big delete is several times slower (freed inodes are skipped for a while; see
# bench/run.sh, COOLDOWN). The runs are removed at the end, in the background, and the next run
# of this script (or bench/run.sh) waits COOLDOWN seconds after that cleanup.
#
# Usage: bench/bridge/run.sh      (a few minutes plus the release build, plus any cooldown)
# Environment: N (jobs, default 60000), N_ENQ (C durable enqueue loop, default 3000), REPS (default 3),
#   BENCH_DIR (default bench/out), SKIP_BUILD=1 (use .build-release as it is), COOLDOWN (default 370)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${BENCH_DIR:-$ROOT/bench/out}
BASE=$OUT/bridge-$(date +%s)
N=${N:-60000}
N_ENQ=${N_ENQ:-3000}
REPS=${REPS:-3}
mkdir -p "$BASE/bin"
BIN=$BASE/bin
# Wait for an earlier cleanup to finish, then for the kernel to stop skipping the inodes it freed.
if [[ -f $OUT/.cleanup.pid ]] && kill -0 "$(cat "$OUT/.cleanup.pid")" 2>/dev/null; then
    echo "waiting for the previous cleanup to finish..." >&2
    while kill -0 "$(cat "$OUT/.cleanup.pid")" 2>/dev/null; do sleep 2; done
fi
if [[ -f $OUT/.cleanup.done ]]; then
    wait_s=$(( ${COOLDOWN:-370} - ($(date +%s) - $(stat -c %Y "$OUT/.cleanup.done")) ))
    if (( wait_s > 0 )); then
        echo "waiting ${wait_s}s after the previous cleanup (freed inodes slow down creates; COOLDOWN=0 skips)..." >&2
        sleep "$wait_s"
    fi
fi
command -v kcat >/dev/null || { echo "kcat is missing: apt-get install kcat" >&2; exit 1; }

gcc -O2 -o "$BIN/kafka_mock" "$ROOT/Tests/peers/kafka_mock.c" -lrdkafka
gcc -O2 -o "$BIN/bref" "$ROOT/bench/bridge/ref.c" -lrdkafka
gcc -O2 -o "$BIN/ref" "$ROOT/bench/c/ref.c"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    echo "building llmspool (release)..." >&2
    swift build -c release --package-path "$ROOT" --scratch-path "$ROOT/.build-release" --product llmspool >"$BIN/build.log" 2>&1 \
        || { cat "$BIN/build.log" >&2; exit 1; }
fi
LLMSPOOL=$ROOT/.build-release/release/llmspool

# The mock keeps ~5 MiB per partition and drops older data: 24 partitions per topic.
IN_TOPICS=$(for rep in $(seq 1 "$REPS"); do printf 'in%d:24 ' "$rep"; done)
# shellcheck disable=SC2086
coproc MOCK { exec "$BIN/kafka_mock" 3 out:24 ref:24 kcat:24 $IN_TOPICS; }
read -r BROKERS <&"${MOCK[0]}"
MOCK=$MOCK_PID
trap 'kill $MOCK 2>/dev/null || true' EXIT

# N job files (hand-dropped style: ID.json with a prompt), written once, copied per run.
python3 - "$BASE/jobs" "$N" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
for i in range(n):
    jid = f"bench-{i:07d}"
    with open(f"{d}/{jid}.json", "w") as f:
        f.write('{"jobId":"%s","prompt":"Summarise the quarterly report in three bullet points, number %d","userId":"u%d","tenantId":"t%d"}' % (jid, i, i % 7, i % 3))
PY
python3 - "$BASE/jobs" "$BASE/kcat.txt" <<'PY'
import os, sys
d, out = sys.argv[1], sys.argv[2]
with open(out, "w") as o:
    for name in sorted(os.listdir(d)):
        o.write(name[:-5] + "\t" + open(os.path.join(d, name)).read() + "\n")
PY

# Waits until directory $1 holds $2 entries; prints the seconds since $3 (an epoch in ns).
wait_count() {
    python3 - "$1" "$2" "$3" <<'PY'
import os, sys, time
d, n, t0 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
while sum(1 for _ in os.scandir(d)) < n:
    time.sleep(0.05)
print("%.3f" % ((time.time_ns() - t0) / 1e9))
PY
}

# Waits until directory $1 holds $2 entries; prints the seconds since $3 (an epoch in ns) at which
# the first entry appeared and at which the last did.
wait_first_last() {
    python3 - "$1" "$2" "$3" <<'PY'
import os, sys, time
d, n, t0 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
first = None
while True:
    c = sum(1 for _ in os.scandir(d))
    if c and first is None: first = time.time_ns()
    if c >= n: break
    time.sleep(0.02)
print("%.3f %.3f" % ((first - t0) / 1e9, (time.time_ns() - t0) / 1e9))
PY
}

median() { sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

ours_out=() ; ref_out=() ; kcat_out=() ; ours_in=() ; ours_in_all=() ; join_in=() ; enq=()
for rep in $(seq 1 "$REPS"); do
    R=$BASE/run-$rep
    "$LLMSPOOL" init "$R/ours" >/dev/null
    "$LLMSPOOL" init "$R/ref" >/dev/null
    "$LLMSPOOL" init "$R/in" >/dev/null
    find "$BASE/jobs" -name '*.json' -exec cp -t "$R/ours/new/" {} +
    find "$BASE/jobs" -name '*.json' -exec cp -t "$R/ref/new/" {} +
    sync; sleep 2

    # spool → Kafka: llmspool
    t0=$(date +%s%N)
    "$LLMSPOOL" bridge --spool "$R/ours" --brokers "$BROKERS" --jobs-out out --log-level warning 2>"$R/ours.log" &
    pid=$!
    s=$(wait_count "$R/ours/forwarded" "$N" "$t0")
    kill -TERM $pid; wait $pid || true
    ours_out+=("$(awk -v n="$N" -v s="$s" 'BEGIN{printf "%.0f", n/s}')")

    # spool → Kafka: C reference (its own timer, and the same poller for a like-for-like figure)
    mkdir -p "$R/ref/forwarded"
    t0=$(date +%s%N)
    "$BIN/bref" "$BROKERS" ref "$R/ref/new" "$R/ref/forwarded" >"$R/ref.out" &
    pid=$!
    s=$(wait_count "$R/ref/forwarded" "$N" "$t0")
    wait $pid
    ref_out+=("$(awk -v n="$N" -v s="$s" 'BEGIN{printf "%.0f", n/s}')")

    # kcat -P of the same messages from one file
    t0=$(date +%s%N)
    kcat -P -b "$BROKERS" -t kcat -K $'\t' -X enable.idempotence=true -l "$BASE/kcat.txt"
    t1=$(date +%s%N)
    kcat_out+=("$(awk -v n="$N" -v ns="$((t1 - t0))" 'BEGIN{printf "%.0f", n/(ns/1e9)}')")

    # Kafka → spool: llmspool --jobs-in from a topic of its own holding the N jobs once
    kcat -P -b "$BROKERS" -t "in$rep" -K $'\t' -l "$BASE/kcat.txt"
    t0=$(date +%s%N)
    "$LLMSPOOL" bridge --spool "$R/in" --brokers "$BROKERS" --jobs-in "in$rep" --group "bench-$rep" --dlq "" --log-level warning 2>"$R/in.log" &
    pid=$!
    read -r first last < <(wait_first_last "$R/in/new" "$N" "$t0")
    kill -TERM $pid; wait $pid || true
    # Timed from the first job in new/: before it, the consumer joins its group, which on the mock
    # takes seconds whatever the load (reported apart, as "join").
    ours_in+=("$(awk -v n="$N" -v a="$first" -v b="$last" 'BEGIN{printf "%.0f", (n-1)/(b-a)}')")
    ours_in_all+=("$(awk -v n="$N" -v s="$last" 'BEGIN{printf "%.0f", n/s}')")
    join_in+=("$first")

    # The single-job durable enqueue loop in C, on the same disk
    mkdir -p "$R/enq"
    enq+=("$("$BIN/ref" enqueue-durable "$R/enq/s" "$N_ENQ" | sed -E 's/.*jobs\/s=([0-9]+).*/\1/')")
    echo "run $rep: out ours=${ours_out[-1]} ref=${ref_out[-1]} kcat=${kcat_out[-1]}  in ours=${ours_in[-1]} (from start ${ours_in_all[-1]}, join ${join_in[-1]} s) C-enqueue=${enq[-1]}" >&2
done

mo=$(printf '%s\n' "${ours_out[@]}" | median); mr=$(printf '%s\n' "${ref_out[@]}" | median)
mk=$(printf '%s\n' "${kcat_out[@]}" | median); mi=$(printf '%s\n' "${ours_in[@]}" | median)
me=$(printf '%s\n' "${enq[@]}" | median)
ma=$(printf '%s\n' "${ours_in_all[@]}" | median); mj=$(printf '%s\n' "${join_in[@]}" | median)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
cat <<TABLE

Kafka bridge, librdkafka mock cluster (3 brokers, 24 partitions), $N jobs, median of $REPS runs

| direction | llmspool msgs/s | reference | reference msgs/s | ratio | target |
|---|---:|---|---:|---:|---|
| spool → Kafka | $mo | C: read, produce (idempotent), rename on report | $mr | $(ratio "$mo" "$mr")× | ≥ 0.7× |
| spool → Kafka | $mo | kcat -P from one file (ceiling) | $mk | $(ratio "$mo" "$mk")× | — |
| Kafka → spool (durable) | $mi | C single-job durable enqueue loop | $me | $(ratio "$mi" "$me")× | ≥ 3× |

Kafka → spool is timed from the first job in new/ to the last; from the bridge's start, counting
the consumer group's join (median $mj s before the first job), it was $ma msgs/s ($(ratio "$ma" "$me")×).
TABLE

kill "$MOCK" 2>/dev/null || true
rm -f "$OUT/.cleanup.done"
nohup bash -c 'nice -n 19 rm -rf "$1"; sync; touch "$2/.cleanup.done"' cleanup "$BASE" "$OUT" >/dev/null 2>&1 &
echo $! >"$OUT/.cleanup.pid"
