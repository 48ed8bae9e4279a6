#!/usr/bin/env bash
# Scaling across hosts: one submitting host and 1, 2, then 3 worker hosts, each in a network
# namespace of its own (Tests/peers/multihost.sh), all on librdkafka's mock cluster (3 brokers).
#
#   host 1 (origin)     spool, `bridge --jobs-out jobs --results-in results` (no worker)
#   hosts 2..K+1        spool, `bridge --jobs-in jobs --results-out results --results-of kafka`
#                       and a worker whose LLM is `builtin:echo?delay=LATENCY` with `--concurrency CAP`
#
# Each host can answer at most CAP / LATENCY jobs a second (40/s with the defaults), so the
# hosts, not the stand-in or the brokers, are the limit. For each K the script starts the
# hosts on fresh topics, waits for the consumer group to settle, drops N jobs into the origin's
# new/ at once (written to tmp/ first, then moved) and times until all N are in the origin's
# done/. Prints a Markdown table: jobs/s for each K, the ratio to one host, and how the jobs were
# spread over the worker hosts.
#
# Needs root, iproute2, util-linux (unshare), socat, cc and librdkafka-dev.
# Usage: bench/multihost/run.sh
# Environment: N (jobs per run, default 1200), LATENCY (default 200ms), CAP (default 8),
#   HOSTS (worker host counts, default "1 2 3"), LLMSPOOL_BIN (default .build/release/llmspool,
#   else .build/debug/llmspool), KEEP=1 (keep the run's directory)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${LLMSPOOL_BIN:-$ROOT/.build/release/llmspool}
[[ -x $BIN ]] || BIN=$ROOT/.build/debug/llmspool
N=${N:-1200}
LATENCY=${LATENCY:-200ms}
CAP=${CAP:-8}
HOSTS=${HOSTS:-1 2 3}
H=$ROOT/Tests/peers/multihost.sh
NAME=lsb$((RANDOM % 200 + 1))
NET=$((RANDOM % 250 + 1))
DIR=$(mktemp -d /tmp/llmspool-multihost.XXXXXX)
max=0; for k in $HOSTS; do (( k > max )) && max=$k; done

cleanup() {
    for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    "$H" down "$NAME" || true
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$DIR"
}
trap cleanup EXIT

cc -O1 -o "$DIR/kafka_mock" "$ROOT/Tests/peers/kafka_mock.c" -lrdkafka
topics=()
for k in $HOSTS; do topics+=("jobs$k:6" "results$k:3"); done
coproc MOCK { exec "$DIR/kafka_mock" 3 "${topics[@]}"; }
read -r boot <&"${MOCK[0]}"
"$H" up "$NAME" $((max + 1)) "$NET" "$boot"
GROUP_X=(-X session.timeout.ms=6000 -X heartbeat.interval.ms=500)

# on HOST SPOOL LOG ARGS...: an llmspool process on a host, in the background.
on() { local host=$1 spool=$2 log=$3; shift 3; LLMSPOOL_SPOOL=$spool "$H" run "$NAME" "$host" "$BIN" "$@" 2>"$log" </dev/null >/dev/null & }

# settled LOG...: every log has an assignment, and no log has changed its assignments for 4 s.
settled() {
    local last="" now stable=0
    for _ in $(seq 1 600); do
        now=$(for f in "$@"; do grep -c "partitions assigned\|partitions revoked" "$f" || true; done | tr '\n' ' ')
        if [[ $now == "$last" && ! $now =~ (^| )0( |$) ]]; then
            stable=$((stable + 1)); (( stable >= 40 )) && return 0
        else stable=0; fi
        last=$now
        sleep 0.1
    done
    echo "the consumer groups did not settle: $now" >&2; return 1
}

declare -A rate spread
for k in $HOSTS; do
    run=$DIR/k$k
    mkdir -p "$run"
    for i in $(seq 1 $((k + 1))); do "$BIN" init "$run/s$i" >/dev/null; done
    pids_before=$(jobs -p | tr '\n' ' ')
    on 1 "$run/s1" "$run/b1.log" bridge --brokers "$boot" --jobs-out "jobs$k" --results-in "results$k" "${GROUP_X[@]}"
    logs=("$run/b1.log")
    for i in $(seq 2 $((k + 1))); do
        on "$i" "$run/s$i" "$run/b$i.log" bridge --brokers "$boot" --group "w$k" --jobs-in "jobs$k" --dlq "" \
            --results-out "results$k" --results-of kafka "${GROUP_X[@]}"
        on "$i" "$run/s$i" "$run/w$i.log" worker --llm-url "builtin:echo?delay=$LATENCY" --concurrency "$CAP" --log-level warning
        logs+=("$run/b$i.log")
    done
    settled "${logs[@]}"
    for j in $(seq 1 "$N"); do
        printf '{"jobId":"k%s-%s","prompt":"job %s","userId":"u%s"}' "$k" "$j" "$j" $((j % 5)) >"$run/s1/tmp/k$k-$j.json"
    done
    t0=$(date +%s.%N)
    find "$run/s1/tmp" -name '*.json' -exec mv -t "$run/s1/new/" {} +
    while (( $(find "$run/s1/done" -name '*.json' | wc -l) < N )); do sleep 0.1; done
    t1=$(date +%s.%N)
    rate[$k]=$(echo "scale=1; $N / ($t1 - $t0)" | bc)
    spread[$k]=$(for i in $(seq 2 $((k + 1))); do find "$run/s$i/done" -name '*.json' | wc -l; done | paste -sd/)
    echo "K=$k: $N jobs in $(echo "$t1 - $t0" | bc) s = ${rate[$k]} jobs/s; per worker host ${spread[$k]}" >&2
    for p in $(jobs -p); do [[ " $pids_before " == *" $p "* ]] || kill "$p" 2>/dev/null || true; done
    sleep 2
done

ceiling=$(echo "scale=1; 1000 * $CAP / ${LATENCY%ms}" | bc)
echo
echo "| worker hosts | jobs/s | × one host | jobs per worker host | ceiling (hosts × $CAP / $LATENCY) |"
echo "|---|---|---|---|---|"
for k in $HOSTS; do
    ratio=$(echo "scale=2; ${rate[$k]} / ${rate[${HOSTS%% *}]}" | bc)
    echo "| $k | ${rate[$k]} | ${ratio}× | ${spread[$k]} | $(echo "$ceiling * $k" | bc) |"
done
echo
echo "N=$N per run, LLM stand-in builtin:echo?delay=$LATENCY, --concurrency $CAP per worker host, $(basename "$BIN") $(dirname "$BIN" | xargs basename)"
