#!/usr/bin/env bash
# Streaming end to end: stand-in LLM (bench/stream/standin.py) → worker → cur/.ID.json.partial →
# llmspool-cgi under lighttpd → SSE clients (bench/stream/client.py), against the same clients
# reading the stand-in directly, in the same run:
#
#   1. per-chunk latency (the stand-in's write, stamped into the token's text, to the client's
#      read) at 1 and at STREAMS_MID (200) concurrent streamed jobs: p50 and p99;
#   2. time to first token: POST /jobs + GET …/events with a worker running, against a direct
#      streamed call, one after another (K each), with the stand-in's own first-token delay TTFT_MS;
#   3. STREAMS_BIG (1,000) concurrent streamed jobs at RATE (50) tokens/s: the worker's CPU (from
#      /proc/PID/stat, while every stream runs) and every stream's text against its final result.
#
# For 1 and 3 the jobs are POSTed and every event stream opened with no worker running; then the
# worker starts (--concurrency = the number of streams) and claims them all at once.
# Needs: lighttpd python3 (uvloop makes the Python ends cheaper). Release binaries are built into
# .build-release (as bench/worker/run.sh) unless SKIP_BUILD=1.
# Usage: bench/stream/run.sh   (env: RATE=50 TTFT_MS=200 K=20 STREAMS_MID=200 TOKENS_MID=100 STREAMS_BIG=1000
#        TOKENS_BIG=500 BENCH_DIR=bench/out BIN_DIR=…; PARTS="1 mid ttft big" runs the parts named alone and
#        prints their JSON, with PERF=N or SCHED=N for a profile or the scheduler's delays of their
#        first N seconds, WAKEUPS=1 to count the CGIs' wake-ups, SAMPLES=FILE for every token's latency,
#        KEEP=1 to keep the directory)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RATE=${RATE:-50}
TTFT_MS=${TTFT_MS:-200}
K=${K:-20}
STREAMS_MID=${STREAMS_MID:-200}
TOKENS_MID=${TOKENS_MID:-100}
STREAMS_BIG=${STREAMS_BIG:-1000}
TOKENS_BIG=${TOKENS_BIG:-500}
BASE=${BENCH_DIR:-$ROOT/bench/out}/stream-$(date +%s)
mkdir -p "$BASE"
HERE="$ROOT/bench/stream"

# BIN_DIR: the llmspool and llmspool-cgi to measure (e.g. another build's, for an A/B; no build then).
if [ -z "${BIN_DIR:-}" ] && [ "${SKIP_BUILD:-0}" != 1 ]; then swift build -c release --scratch-path "$ROOT/.build-release" >&2; fi
BIN_DIR=${BIN_DIR:-$ROOT/.build-release/release}
BIN="$BIN_DIR/llmspool"
CGI="$BIN_DIR/llmspool-cgi"

# Every open event stream is a CGI process holding one inotify instance, and the kernel allows
# fs.inotify.max_user_instances per user (128 by default): beyond it GET …/events gets a 503. As
# root, the limit is raised for the run (and put back after); otherwise the big run stops there.
INOTIFY=/proc/sys/fs/inotify/max_user_instances
INOTIFY_WAS=$(cat $INOTIFY)
NEED=$((STREAMS_BIG + STREAMS_MID + 256))
if [ "$INOTIFY_WAS" -lt "$NEED" ]; then
    if [ -w $INOTIFY ]; then echo "$NEED" > $INOTIFY; echo "fs.inotify.max_user_instances raised from $INOTIFY_WAS to $NEED for the run" >&2
    else echo "fs.inotify.max_user_instances is $INOTIFY_WAS: event streams past it get 503 (run as root to raise it)" >&2; fi
fi

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$BASE/lighttpd.pid" ] && kill "$(cat "$BASE/lighttpd.pid")" 2>/dev/null || true
    [ "$(cat $INOTIFY)" = "$NEED" ] && [ "$INOTIFY_WAS" -lt "$NEED" ] && echo "$INOTIFY_WAS" > $INOTIFY || true
}
trap cleanup EXIT

python3 -u "$HERE/standin.py" --rate "$RATE" --ttft-ms "$TTFT_MS" > "$BASE/standin.out" &
pids+=($!)
while [ ! -s "$BASE/standin.out" ]; do sleep 0.05; done
LLM="http://127.0.0.1:$(head -1 "$BASE/standin.out")/v1"

"$BIN" init "$BASE/spool" >/dev/null
printf 'sha256:%s bench acme\n' "$(printf bench-token | sha256sum | cut -d' ' -f1)" > "$BASE/tokens"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$BASE/lighttpd.conf" <<CONF
server.document-root = "$BASE"
server.bind = "127.0.0.1"
server.port = $PORT
server.errorlog = "$BASE/error.log"
server.pid-file = "$BASE/lighttpd.pid"
server.max-fds = 16384
server.max-connections = 4096
var.llmspool_cgi = "$CGI"
var.llmspool_spool = "$BASE/spool"
var.llmspool_tokens = "$BASE/tokens"
include "$ROOT/contrib/lighttpd.conf"
# The jobs wait in new/ until the worker starts: no waiting-job limit in the way. (A second
# block on the URL replaces the first one's environment rather than adding to it: all of it here.)
\$HTTP["url"] =~ "^/jobs" {
    setenv.add-environment = ( "LLMSPOOL_SPOOL" => "$BASE/spool", "LLMSPOOL_TOKENS" => "$BASE/tokens",
                               "LLMSPOOL_MAX_WAITING" => "10000000" )
}
CONF
lighttpd -f "$BASE/lighttpd.conf"
sleep 0.5
WEB="http://127.0.0.1:$PORT"

start_worker() {  # $1: concurrency; prints the pid
    "$BIN" worker --spool "$BASE/spool" --llm-url "$LLM" --model stand-in --concurrency "$1" --log-level warning \
        >/dev/null 2>>"$BASE/worker.log" &
    echo $!
}
stop_worker() { kill -TERM "$1" 2>/dev/null || true; while kill -0 "$1" 2>/dev/null; do sleep 0.05; done; }
ticks() { python3 -c "import sys;f=open('/proc/$1/stat').read().rsplit(')',1)[1].split();print(int(f[11])+int(f[12]))"; }

# Streams through the CGI: POST all, open all, start the worker, wait for every result.
through() {  # $1: streams, $2: tokens per stream → the client's JSON on stdout
    local n=$1 out="$BASE/cgi-$1.json"
    rm -f "$BASE/worker.pid"
    SAMPLES=${SAMPLES:+$SAMPLES.cgi-$n} TOKENS=$2 python3 -u "$HERE/client.py" cgi "$WEB" bench-token "$n" "$BASE/worker.pid" > "$out" &
    local client=$!
    while ! grep -q ready "$out" 2>/dev/null; do
        kill -0 $client 2>/dev/null || { echo "client failed" >&2; return 1; }
        sleep 0.1
    done
    local w t0 c0
    # WAKEUPS=1: count the event streams' wake-ups (the CGIs' poll calls) and file opens over the
    # part (perf record of two syscall tracepoints, all CPUs, kept to llmspool-cgi's).
    local counter=""
    if [ "${WAKEUPS:-0}" = 1 ] && command -v perf >/dev/null; then
        perf record -q -a -e syscalls:sys_enter_poll -e syscalls:sys_enter_openat -o "$BASE/wakeups-$n.data" >/dev/null 2>&1 &
        counter=$!; sleep 0.5
    fi
    w=$(start_worker "$n"); pids+=("$w"); echo "$w" > "$BASE/worker.pid.tmp"; mv "$BASE/worker.pid.tmp" "$BASE/worker.pid"
    t0=$(date +%s.%N); c0=$(ticks "$w")
    # PERF=N: a system-wide profile of the first N seconds (perf record -a), summarised to stderr.
    if [ "${PERF:-0}" != 0 ] && command -v perf >/dev/null; then
        perf record -q -a -F 499 -o "$BASE/perf-$n.data" -- sleep "$PERF" 2>/dev/null
        { echo "== perf, $n streams, first ${PERF}s: CPU by process"; perf report -q -i "$BASE/perf-$n.data" --sort comm 2>/dev/null | head -8
          echo "== by symbol"; perf report -q -i "$BASE/perf-$n.data" --sort comm,sym 2>/dev/null | head -25; } >&2 || true  # head's SIGPIPE
    fi
    # SCHED=N: the scheduler's view of the first N seconds (perf sched record -a): per command, CPU
    # time, switches, and the average and worst delay from wake-up to running.
    if [ "${SCHED:-0}" != 0 ] && command -v perf >/dev/null; then
        perf sched record -q -a -o "$BASE/sched-$n.data" -- sleep "$SCHED" >/dev/null 2>&1
        { echo "== perf sched, $n streams, first ${SCHED}s"; perf sched latency -i "$BASE/sched-$n.data" --sort max 2>/dev/null | head -24; } >&2 || true
    fi
    wait $client
    if [ -n "$counter" ]; then
        kill -INT "$counter"; wait "$counter" 2>/dev/null || true
        perf script -i "$BASE/wakeups-$n.data" -F comm,event 2>/dev/null | awk -v n="$n" '$1 == "llmspool-cgi" { c[$2]++ }
            END { printf "== %d event streams: %d poll calls (wake-ups + 1), %d opens in llmspool-cgi\n", n, c["syscalls:sys_enter_poll:"], c["syscalls:sys_enter_openat:"] }' >&2 || true
    fi
    local c1 t1
    c1=$(ticks "$w"); t1=$(date +%s.%N)
    stop_worker "$w"
    python3 -c "import json,os;d=json.loads(open('$out').read().split('\n')[1]);d['worker_cpu_whole_cores']=round(($c1-$c0)/os.sysconf('SC_CLK_TCK')/($t1-$t0),3);d['whole_seconds']=round($t1-$t0,2);print(json.dumps(d))"
}

direct() { TOKENS=$2 python3 -u "$HERE/client.py" direct "$LLM" "$1"; }

load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "load before: $(load) ($(nproc) cores)" >&2
PARTS=${PARTS:-1 mid ttft big}
if [ "$PARTS" != "1 mid ttft big" ]; then  # one part alone (e.g. PARTS=mid PERF=5): its JSON only
    for part in $PARTS; do case $part in
        1) through 1 200 ;; direct) direct "$STREAMS_MID" "$TOKENS_MID" ;; mid) through "$STREAMS_MID" "$TOKENS_MID" ;; big) through "$STREAMS_BIG" "$TOKENS_BIG" ;;
    esac; done
    cleanup; trap - EXIT
    [ "${KEEP:-0}" = 1 ] || (rm -rf "$BASE" &)
    exit 0
fi
L1=$(load); D1=$(direct 1 200); C1=$(through 1 200)
echo "1 stream: direct $D1" >&2; echo "1 stream: through $C1" >&2
L200=$(load); D200=$(direct "$STREAMS_MID" "$TOKENS_MID"); C200=$(through "$STREAMS_MID" "$TOKENS_MID")
echo "$STREAMS_MID streams: direct $D200" >&2; echo "$STREAMS_MID streams: through $C200" >&2

LT=$(load)
W=$(start_worker 16); pids+=("$W"); sleep 1
TD=$(python3 -u "$HERE/client.py" ttft-direct "$LLM" "$K")
TC=$(python3 -u "$HERE/client.py" ttft-cgi "$WEB" bench-token "$K")
TD2=$(python3 -u "$HERE/client.py" ttft-direct "$LLM" "$K")
stop_worker "$W"
echo "ttft: direct $TD / through $TC / direct $TD2" >&2

LB=$(load); CB=$(through "$STREAMS_BIG" "$TOKENS_BIG")
echo "$STREAMS_BIG streams: through $CB" >&2
LAFTER=$(load)

python3 - "$D1" "$C1" "$D200" "$C200" "$TD" "$TC" "$TD2" "$CB" "$L1" "$L200" "$LT" "$LB" "$LAFTER" "$STREAMS_MID" "$STREAMS_BIG" "$RATE" "$TTFT_MS" "$TOKENS_BIG" <<'PY'
import json, sys
a = sys.argv[1:]
d1, c1, d200, c200, td, tc, td2, cb = (json.loads(x) for x in a[:8])
l1, l200, lt, lb, lafter = a[8:13]
mid, big, rate, ttft, tokens_big = a[13:18]
f = lambda v: "%.2f" % v
print("| per-chunk latency, stand-in write → SSE client read | p50 ms | p99 ms | chunks | direct p50 / p99 ms (same client, same run) | load (1 min) |")
print("|---|--:|--:|--:|--:|--:|")
for n, c, d, l in (("1", c1, d1, l1), (mid, c200, d200, l200)):
    print("| %s streamed job(s) through worker + partial file + CGI (lighttpd) | %s | %s | %d | %s / %s | %s |" % (n, f(c["p50_ms"]), f(c["p99_ms"]), c["chunks"], f(d["p50_ms"]), f(d["p99_ms"]), l.split()[0]))
sp = lambda d, k, q: f(d["split"][k][q])
print("| the %s streams split: first second after the first token / the rest, p99 ms; each stream's first token, p50 ms | %s / %s; %s | | | %s / %s; %s | |" % (
    mid, sp(c200, "first_second", "p99_ms"), sp(c200, "after_first_second", "p99_ms"), sp(c200, "token_0", "p50_ms"),
    sp(d200, "first_second", "p99_ms"), sp(d200, "after_first_second", "p99_ms"), sp(d200, "token_0", "p50_ms")))
base = (td["ttft_p50_ms"] + td2["ttft_p50_ms"]) / 2
print()
print("| time to first token (stand-in's own delay %s ms), median of %d | ms |" % (ttft, td["calls"]))
print("|---|--:|")
print("| direct streamed call to the stand-in (before / after) | %s / %s |" % (f(td["ttft_p50_ms"]), f(td2["ttft_p50_ms"])))
print("| POST /jobs + GET /jobs/ID/events, worker running | %s |" % f(tc["ttft_p50_ms"]))
print("| ratio through / direct | %.3f× (target ≤ 1.05× + 5 ms = %s ms) |" % (tc["ttft_p50_ms"] / base, f(base * 1.05 + 5)))
print()
print("| %s concurrent streamed jobs, %s tokens each at %s tokens/s | |" % (big, tokens_big, rate))
print("|---|--:|")
print("| worker CPU while all streams run (cores) | %s |" % cb.get("worker_cpu_steady_cores"))
print("| worker CPU over the whole run, claim to last result (cores) | %s |" % cb["worker_cpu_whole_cores"])
print("| chunks received / per-chunk p50 / p99 ms | %d / %s / %s |" % (cb["chunks"], f(cb["p50_ms"]), f(cb["p99_ms"])))
print("| streams whose text ≠ final result / of which only the last deltas missing (tokens) / tokens out of sequence / restarts | %d / %d (%d) / %d / %d |" % (cb["mismatched"], cb["tail_missing"], cb["tail_tokens_missing"], cb["bad_sequence"], cb["restarts"]))
print("| the same at %s streams | %d / %d (%d) / %d / %d |" % (mid, c200["mismatched"], c200["tail_missing"], c200["tail_tokens_missing"], c200["bad_sequence"], c200["restarts"]))
print()
print("Load average (1 min) before each part: 1 stream %s, %s streams %s, TTFT %s, %s streams %s; after: %s." % (l1.split()[0], mid, l200.split()[0], lt.split()[0], big, lb.split()[0], lafter))
PY
cleanup; trap - EXIT
(rm -rf "$BASE" &)
