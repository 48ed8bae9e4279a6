#!/usr/bin/env bash
# Times a `--jobs-in` bridge's way back into its consumer group after `kill -9`: two bridges in
# one group on librdkafka's mock cluster (3 brokers, 4 partitions), the second killed and started
# again on the same spool; the time from the new start to its "partitions assigned" log line.
# Usage: bench/multihost/restart.sh [-X key=value]...   (extra bridge options, e.g. the session timeout)
# Environment: LLMSPOOL_BIN (default .build/release/llmspool, else .build/debug/llmspool).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${LLMSPOOL_BIN:-$ROOT/.build/release/llmspool}
[[ -x $BIN ]] || BIN=$ROOT/.build/debug/llmspool
DIR=$(mktemp -d /tmp/llmspool-restart.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"' EXIT
cc -O1 -o "$DIR/kafka_mock" "$ROOT/Tests/peers/kafka_mock.c" -lrdkafka
coproc MOCK { exec "$DIR/kafka_mock" 3 jobs:4; }
read -r boot <&"${MOCK[0]}"
"$BIN" init "$DIR/s1" >/dev/null
"$BIN" init "$DIR/s2" >/dev/null
bridge() { LLMSPOOL_SPOOL=$1 "$BIN" bridge --brokers "$boot" --group g --jobs-in jobs --dlq "" --log-level info "${@:3}" 2>"$2" & }
bridge "$DIR/s1" "$DIR/one.log" "$@"
bridge "$DIR/s2" "$DIR/two.log" "$@"
two=$!
wait_for() { # FILE TEXT COUNT LIMIT_S
    local end=$((SECONDS + $4))
    while (( $(grep -c "$2" "$1" || true) < $3 )); do (( SECONDS < end )) || return 1; sleep 0.05; done
}
wait_for "$DIR/two.log" "partitions assigned" 1 120 && wait_for "$DIR/one.log" "partitions assigned" 1 120
sleep 8  # let the group settle (the mock holds a rebalance for up to a session timeout)
kill -9 "$two"; wait "$two" 2>/dev/null || true
t0=$(date +%s.%N)
bridge "$DIR/s2" "$DIR/two-again.log" "$@"
wait_for "$DIR/two-again.log" "partitions assigned" 1 180 || { echo "no assignment within 180 s" >&2; exit 1; }
t1=$(date +%s.%N)
printf 'restart after kill -9 -> partitions assigned: %.2f s (options: %s)\n' "$(echo "$t1 - $t0" | bc)" "${*:-none}"
grep -m1 -o 'instance=[^ ]*' "$DIR/two-again.log" || true
