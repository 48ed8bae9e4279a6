#!/usr/bin/env bash
# Power-loss suite: cuts the power under a running llmspool at random moments (LazyFS under ext4
# on a loop device) and checks, with llmspool's own recovery, that nothing acknowledged was lost
# or duplicated. See Tests/powerloss/README.md.
#
#   Tests/powerloss/run.sh [--trials N] [--scenarios 1,2,3,5,4] [--keep] [--out DIR]
#
# Needs root, /dev/fuse, loop devices, python3, cc and librdkafka-dev (scenario 4), and the LazyFS
# harness in ../shared/tools/lazyfs next to the project (or LLMSPOOL_LAZYFS_DIR). Builds LazyFS once
# into .build-powerloss/ (git-ignored) and uses the debug build of llmspool (`swift build`).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HARNESS=${LLMSPOOL_LAZYFS_DIR:-$ROOT/../shared/tools/lazyfs}
fail() { echo "powerloss: $*" >&2; exit 1; }

[ -x "$HARNESS/run.sh" ] && [ -x "$HARNESS/build.sh" ] ||
    fail "no LazyFS harness at $HARNESS (expected ../shared/tools/lazyfs beside the project; set LLMSPOOL_LAZYFS_DIR)"
HARNESS=$(cd "$HARNESS" && pwd)
[ "$(id -u)" = 0 ] || fail "needs root (FUSE, loop devices, mount)"
[ -c /dev/fuse ] || fail "no /dev/fuse"
command -v losetup >/dev/null || fail "no losetup (apt-get install util-linux)"
command -v python3 >/dev/null || fail "no python3"

WORK=$ROOT/.build-powerloss
mkdir -p "$WORK"
# LazyFS: built once (about 1.5 min), kept across runs.
if [ ! -x "$WORK/lazyfs/bin/lazyfs" ]; then
    echo "powerloss: building LazyFS into $WORK/lazyfs"
    "$HARNESS/build.sh" "$WORK/lazyfs" > "$WORK/lazyfs-build.log" 2>&1 ||
        { tail -n 30 "$WORK/lazyfs-build.log" >&2; fail "LazyFS build failed (log: $WORK/lazyfs-build.log)"; }
fi

cd "$ROOT"
swift build -q
BIN=$(swift build --show-bin-path)
for b in llmspool llmspool-cgi; do [ -x "$BIN/$b" ] || fail "no $BIN/$b after swift build"; done

# The Kafka mock cluster for the bridge scenario (compiled as the bridge tests do).
if [ ! -x "$WORK/kafka_mock" ] || [ Tests/peers/kafka_mock.c -nt "$WORK/kafka_mock" ]; then
    cc -O1 -o "$WORK/kafka_mock" Tests/peers/kafka_mock.c -lrdkafka || fail "could not build Tests/peers/kafka_mock.c"
fi

exec python3 "$ROOT/Tests/powerloss/powerloss.py" --harness "$HARNESS/run.sh" --lazyfs "$WORK/lazyfs/bin/lazyfs" \
    --bin "$BIN" --kafka-mock "$WORK/kafka_mock" "$@"
