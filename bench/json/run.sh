#!/usr/bin/env bash
# The JSON parser on five worst-case documents of about 1 MiB (bench/json/make_docs.py: 100k keys,
# 100k short strings with escapes, nesting at the default limit — objects and arrays in turn, and
# arrays only — long numbers), each beside two
# references on the same bytes in the same run: a Swift loop that reads every byte once (the floor)
# and CPython's json.loads (bench/json/py_loads.py). Prints a Markdown table; target: ≤ 50 ms each.
# Times are thread CPU time; a parse is timed until its value is freed (as json.loads is), and
# also until the value is made ("parse only").
#
# Usage: bench/json/run.sh
# Environment:
#   REPS        parses per document (default 21); the table shows the least and the median
#   OLD_REF     also time the parser of this commit (e.g. 2e6ae7d, before the fix), built apart
#               under bench/out/json-old/ with json-bench's -DJSON_OLD_API; OLD_REPS parses (default 1)
#   SKIP_BUILD=1  use the json-bench already built
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=$ROOT/bench/out/json
REPS=${REPS:-21}
OLD_REPS=${OLD_REPS:-1}
mkdir -p "$OUT"

if [ "${SKIP_BUILD:-}" != 1 ]; then
    swift build -c release --package-path "$ROOT/Benchmarks" --scratch-path "$ROOT/.build-bench" --product json-bench >&2
fi
BIN=$ROOT/.build-bench/release/json-bench

python3 "$ROOT/bench/json/make_docs.py" "$OUT/docs"
DOCS=("$OUT/docs/keys.json" "$OUT/docs/escapes.json" "$OUT/docs/deep.json" "$OUT/docs/deep-arrays.json" "$OUT/docs/numbers.json")

"$BIN" --reps "$REPS" "${DOCS[@]}" > "$OUT/swift.txt"
python3 "$ROOT/bench/json/py_loads.py" --reps "$REPS" "${DOCS[@]}" > "$OUT/python.txt"
: > "$OUT/old.txt"
if [ -n "${OLD_REF:-}" ]; then
    OLD=$ROOT/bench/out/json-old
    rm -rf "$OLD/src" && mkdir -p "$OLD/src"
    git -C "$ROOT" archive "$OLD_REF" Package.swift Sources | tar -x -C "$OLD/src"
    cp -r "$ROOT/Benchmarks" "$OLD/src/Benchmarks"
    if [ "${SKIP_BUILD:-}" != 1 ]; then
        swift build -c release --package-path "$OLD/src/Benchmarks" --scratch-path "$OLD/build" \
            --product json-bench -Xswiftc -DJSON_OLD_API >&2
    fi
    "$OLD/build/release/json-bench" --reps "$OLD_REPS" "${DOCS[@]}" > "$OUT/old.txt"
fi

python3 - "$OUT/swift.txt" "$OUT/python.txt" "$OUT/old.txt" <<'PY'
import sys
def load(path, key="name"):
    rows = {}
    for line in open(path):
        name, *fields = line.split(" ", 1)[0:1] + line.split(" ")[1:]
        rows[name] = dict(f.split("=", 1) for f in fields if "=" in f and not f.startswith("(")) | {"raw": line.strip()}
    return rows
swift, py, old = load(sys.argv[1]), load(sys.argv[2]), load(sys.argv[3])
print("| document | bytes | llmspool ms, parse + free (least / median) | parse only | byte scan ms | CPython json.loads ms | vs json.loads | ≤ 50 ms |" + (" before the fix ms |" if old else ""))
print("|---|--:|--:|--:|--:|--:|--:|---|" + ("--:|" if old else ""))
for name, s in swift.items():
    p = py[name]
    least = float(s["parse_min_ms"])
    row = f"| {name} | {int(s['bytes']):,} | {s['parse_min_ms']} / {s['parse_median_ms']} | {s['unfreed_min_ms']} | {s['scan_min_ms']} | {p['py_min_ms']} | {least / float(p['py_min_ms']):.2f}× | {'PASS' if least <= 50 else 'FAIL'} |"
    if old:
        row += f" {old[name]['parse_min_ms']} |"
    print(row)
print()
for name, s in swift.items():
    print(f"{name}, default limits ({s['default_limits_ms']} ms): " + s["raw"].split("default_limits=", 1)[1].rsplit(" sink=", 1)[0])
PY
