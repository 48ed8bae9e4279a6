#!/usr/bin/env bash
# libcurl's own memory per call in flight, with the worker's easy-handle options (bench/worker/curlmem.c,
# plain C, no Swift): N1 and N2 transfers held open at once by the stand-in LLM (Tests/peers/fake_llm.py,
# answering after 60 s); prints the RSS of each and the slope in KiB per transfer. This is the floor
# under bench/worker/inflight.sh's figure: what 10,000 calls cost in libcurl before any of our code.
#
# Usage: bench/worker/curlmem.sh     (env: N1=2000 N2=6000; curlmem.c reads BUF, MAXCONNECTS, FRESH,
#        FORBID, H2PK, MULTIPLEX, MAXSTREAMS for variants — see its first lines)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${BENCH_DIR:-$ROOT/bench/out}
N1=${N1:-2000}
N2=${N2:-6000}
mkdir -p "$OUT"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
gcc -O2 -o "$OUT/curlmem" "$ROOT/bench/worker/curlmem.c" -lcurl
rss() {
    python3 -u "$ROOT/Tests/peers/fake_llm.py" > "$OUT/curlmem.port" &
    local llm=$!
    while [ ! -s "$OUT/curlmem.port" ]; do sleep 0.1; done
    "$OUT/curlmem" "http://127.0.0.1:$(head -1 "$OUT/curlmem.port")/v1/chat/completions" "$1" | grep '^N='
    kill -9 $llm; wait $llm 2>/dev/null || true
    rm -f "$OUT/curlmem.port"
}
a=$(rss "$N1"); b=$(rss "$N2")
echo "N=$N1: $a"
echo "N=$N2: $b"
ka=$(sed -E 's/.* rss=([0-9]+) KB.*/\1/' <<<"$a"); kb=$(sed -E 's/.* rss=([0-9]+) KB.*/\1/' <<<"$b")
python3 -c "print('libcurl: %.1f KiB per transfer in flight (slope N=$N1..$N2)' % (($kb - $ka) / ($N2 - $N1)))"
