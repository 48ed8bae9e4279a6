#!/usr/bin/env bash
# Benchmarks the spool's hot paths three ways on the same disk, in the same run, and prints a
# Markdown table with the ratios and the targets of issue 3:
#   llmspool   Benchmarks/ (spool-bench, through the Spool library, release build)
#   C ref      bench/c/ref.c (the same system calls written directly, gcc -O2): each llmspool mode is
#              paired with the C mode that makes the same calls (enqueue-batch with enqueue-syncfs,
#              finish-batch with finish-syncfs, the others with the mode of the same name)
#   kombu      bench/kombu_bench.py (kombu's filesystem transport; pip install kombu)
#
# Usage: bench/run.sh            (from anywhere; about 3 minutes plus the build, more after a recent run)
# Environment:
#   BENCH_DIR   base directory for the spools (default bench/out, git-ignored); put it on the disk you
#               want to measure. Every run gets fresh directories under BENCH_DIR/run-*.
#   REPS        runs of each measurement (default 5); the table shows the median.
#   N_DURABLE N_BATCH N_VOLATILE N_CLAIM N_FINISH N_FBATCH N_KPUBLISH N_KCONSUME   jobs per run (see below)
#   BATCH       jobs per group commit, enqueue and finish (default 64)
#   SKIP_BUILD=1  use the spool-bench already built;  KEEP=1  keep the spools (else removed in the background)
#   IDLE_WAIT   before each run, wait for the other processes on the machine to use under 20 % of the
#               CPU (a test suite on 2 cores skews every figure), up to this many seconds in all (default 900)
#   COOLDOWN    seconds to leave between the end of the previous run's cleanup and this run (default 370):
#               ext4 without a journal skips inodes freed in the last 60 s, or 360 s while their inode
#               table block is dirty (as new files in the same block make it), scanning past each one
#               on every create; right after a big delete, creating files is ~10x slower
#               (kernel: fs/ext4/ialloc.c, recently_deleted(), RECENTCY_MIN/RECENTCY_DIRTY).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${BENCH_DIR:-$ROOT/bench/out}
REPS=${REPS:-5}
BATCH=${BATCH:-64}
# Sized so one run takes about 1-3 s on ext4 without a journal, 2 cores.
N_DURABLE=${N_DURABLE:-3000}     # durable enqueue, one job at a time
N_BATCH=${N_BATCH:-10000}        # durable enqueue, group commit
N_VOLATILE=${N_VOLATILE:-40000}  # enqueue without fsync
N_CLAIM=${N_CLAIM:-50000}        # claim (rename new/ -> cur/)
N_FINISH=${N_FINISH:-2000}       # claim + finish, one job at a time; kombu consume uses N_KCONSUME (default the same)
N_FBATCH=${N_FBATCH:-$N_FINISH}  # claim + finish(batch:), BATCH at a time; the same N as kombu consume by default
N_KPUBLISH=${N_KPUBLISH:-10000}
N_KCONSUME=${N_KCONSUME:-$N_FINISH}

mkdir -p "$BASE"
BIN=$BASE/bin
mkdir -p "$BIN"
REF=$BIN/ref
SPOOL_BENCH=$ROOT/.build-bench/release/spool-bench

gcc -O2 -Wall -Wextra -o "$REF" "$ROOT/bench/c/ref.c"
if [[ ${SKIP_BUILD:-0} != 1 || ! -x $SPOOL_BENCH ]]; then
    echo "building spool-bench (release)..." >&2
    # Others may be editing Sources/ while this builds ("modified during the build"): try again.
    for try in 1 2 3; do
        if swift build -c release --package-path "$ROOT/Benchmarks" --scratch-path "$ROOT/.build-bench" >"$BIN/build.log" 2>&1; then
            break
        fi
        [[ $try == 3 ]] && { cat "$BIN/build.log" >&2; exit 1; }
        sleep 2
    done
fi
python3 -c 'import kombu' 2>/dev/null || { echo "kombu is missing: pip install kombu" >&2; exit 1; }

# Wait for the previous run's cleanup, and then for the kernel to stop skipping the inodes it freed.
if [[ -f $BASE/.cleanup.pid ]] && kill -0 "$(cat "$BASE/.cleanup.pid")" 2>/dev/null; then
    echo "waiting for the previous run's cleanup (pid $(cat "$BASE/.cleanup.pid")) to finish..." >&2
    while kill -0 "$(cat "$BASE/.cleanup.pid")" 2>/dev/null; do sleep 2; done
fi
if [[ -f $BASE/.cleanup.done ]]; then
    wait_s=$(( ${COOLDOWN:-370} - ($(date +%s) - $(stat -c %Y "$BASE/.cleanup.done")) ))
    if (( wait_s > 0 )); then
        echo "waiting ${wait_s}s after the previous cleanup (freed inodes slow down creates; COOLDOWN=0 skips)..." >&2
        sleep "$wait_s"
    fi
fi

RUN=$BASE/run-$(date +%Y%m%d-%H%M%S)-$$
mkdir -p "$RUN"
RAW=$RUN/raw.txt
: >"$RAW"

# measure KEY CMD...: runs CMD once on a fresh directory (the last argument before N is the dir),
# after a sync so that no earlier run's writeback shares the disk; records the rate under KEY.
measure() {
    local key=$1
    shift
    sync
    local line
    line=$("$@")
    echo "$line" >&2
    local rate=${line##*/s=}
    echo "$key $rate" >>"$RAW"
}

# Percent of the CPU busy over one second, all processes.
cpu_busy() {
    local a b
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    local total=0 k
    for k in 1 2 3 4 5 6 7 8; do total=$(( total + b[k] - a[k] )); done
    local idle=$(( b[4] - a[4] + b[5] - a[5] ))
    echo $(( total > 0 ? 100 * (total - idle) / total : 0 ))
}

# Waits until the machine is quiet (see IDLE_WAIT); notes in the output when it was not.
NOISY=0
IDLE_LEFT=${IDLE_WAIT:-900}
wait_idle() {
    local said=0 busy
    while busy=$(cpu_busy); (( busy >= 20 )); do
        if (( IDLE_LEFT <= 0 )); then
            echo "${busy}% of the CPU busy and no more waiting allowed (IDLE_WAIT): measuring anyway" >&2
            NOISY=$(( NOISY + 1 ))
            return
        fi
        if (( said == 0 )); then echo "machine busy (${busy}% CPU): waiting for it to settle..." >&2; said=1; fi
        sleep 4
        IDLE_LEFT=$(( IDLE_LEFT - 5 ))
    done
}

# pair KEY SPOOL_MODE C_MODE N [BATCH]: llmspool and the C reference that makes the same system calls,
# the order alternating between runs so that neither always goes first.
pair() {
    local key=$1 smode=$2 cmode=$3 n=$4 batch=${5:-}
    if (( rep % 2 )); then
        measure "c.$key" "$REF" "$cmode" "$d/c-$key" "$n" $batch
        measure "s.$key" "$SPOOL_BENCH" "$smode" "$d/s-$key" "$n" $batch
    else
        measure "s.$key" "$SPOOL_BENCH" "$smode" "$d/s-$key" "$n" $batch
        measure "c.$key" "$REF" "$cmode" "$d/c-$key" "$n" $batch
    fi
}

for rep in $(seq 1 "$REPS"); do
    wait_idle
    echo "--- run $rep of $REPS" >&2
    d=$RUN/$rep
    mkdir -p "$d"
    pair durable  enqueue-durable  enqueue-durable  "$N_DURABLE"
    pair batch    enqueue-batch    enqueue-syncfs   "$N_BATCH" "$BATCH"
    measure c.fsynceach "$REF" enqueue-batch "$d/c-fsynceach" "$N_BATCH" "$BATCH"
    pair volatile enqueue-volatile enqueue-volatile "$N_VOLATILE"
    measure k.publish  python3 "$ROOT/bench/kombu_bench.py" publish "$d/k-publish" "$N_KPUBLISH"
    pair claim    claim            claim            "$N_CLAIM"
    pair finish   claim-finish     claim-finish     "$N_FINISH"
    pair fbatch   finish-batch     finish-syncfs    "$N_FBATCH" "$BATCH"
done
# kombu's consume unlinks every file it reads: run it last, so its deletes slow no one else's creates.
wait_idle
for rep in $(seq 1 "$REPS"); do
    measure k.consume  python3 "$ROOT/bench/kombu_bench.py" consume "$RUN/$rep/k-consume" "$N_KCONSUME"
done

echo "Measured $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, kernel $(uname -r), $(df -T "$BASE" | awk 'NR == 2 { print $2 }') ($(df "$BASE" | awk 'NR == 2 { print $1 }')) at $BASE; $REPS runs each, median shown."
echo

# Does the worker finish in batches? It decides which claim + finish figure the consume target uses.
if grep -q 'finish(batch:' "$ROOT"/Sources/Worker/*.swift 2>/dev/null; then WORKER_BATCHES=1; else WORKER_BATCHES=0; fi

# The tables, from the medians.
awk -v reps="$REPS" -v batch="$BATCH" -v wb="$WORKER_BATCHES" \
    -v nd="$N_DURABLE" -v nb="$N_BATCH" -v nv="$N_VOLATILE" -v nc="$N_CLAIM" -v nf="$N_FINISH" -v nfb="$N_FBATCH" \
    -v nkp="$N_KPUBLISH" -v nkc="$N_KCONSUME" '
function median(key,   n, i, j, t, a) {
    n = split(vals[key], a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    lo[key] = a[1]; hi[key] = a[n]
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function ratio(a, b) { return b > 0 ? sprintf("%.2f×", a / b) : "—" }
function verdict(ok) { return ok ? "**PASS**" : "**FAIL**" }
function row(what, s, c, cwhat, k, kwhat) {
    printf "| %s | %d | %d | %s | %s | %s |\n", what, m[s], m[c], cwhat, ratio(m[s], m[c]), k == "" ? "—" : ratio(m[s], m[k]) " " kwhat
}
function spread(key, what) { printf "%s %d–%d", what, lo[key], hi[key] }
{ vals[$1] = vals[$1] " " $2 }
END {
    for (k in vals) m[k] = median(k)
    printf "| llmspool operation | llmspool jobs/s | C ref jobs/s | C ref (same system calls) | llmspool / C | llmspool / kombu |\n"
    printf "|---|--:|--:|---|--:|--:|\n"
    row(sprintf("durable enqueue, one job at a time (N=%d)", nd), "s.durable", "c.durable", "`enqueue-durable`", "k.publish", "publish")
    row(sprintf("durable enqueue, `enqueue(batch:)` of %d (N=%d)", batch, nb), "s.batch", "c.batch", "`enqueue-syncfs`", "k.publish", "publish")
    row(sprintf("volatile enqueue, no fsync (N=%d)", nv), "s.volatile", "c.volatile", "`enqueue-volatile`", "k.publish", "publish")
    row(sprintf("claim (N=%d)", nc), "s.claim", "c.claim", "`claim` (a rename only)", "", "")
    row(sprintf("claim + finish, one job at a time (N=%d)", nf), "s.finish", "c.finish", "`claim-finish`", "k.consume", "consume")
    row(sprintf("claim + `finish(batch:)` of %d (N=%d)", batch, nfb), "s.fbatch", "c.fbatch", "`finish-syncfs`", "k.consume", "consume")
    printf "\nkombu (median of %d): publish %d msgs/s (N=%d, no fsync), consume + ack %d msgs/s (N=%d backlog).\n", reps, m["k.publish"], nkp, m["k.consume"], nkc
    printf "Batched over one at a time: llmspool `enqueue(batch:)` %s C single durable enqueue; llmspool claim + `finish(batch:)` %s C single claim-finish.\n", ratio(m["s.batch"], m["c.durable"]), ratio(m["s.fbatch"], m["c.finish"])
    printf "C group commit with an fsync per file (the issue'"'"'s wording, `enqueue-batch`): %d jobs/s, %s C single durable enqueue.\n", m["c.fsynceach"], ratio(m["c.fsynceach"], m["c.durable"])
    printf "\nTargets (issue 3), from the medians:\n\n"
    printf "| target | measured | result |\n|---|--:|---|\n"
    r = m["s.durable"] / m["c.durable"]; printf "| single durable enqueue ≥ 0.8× C | %.2f× | %s |\n", r, verdict(r >= 0.8)
    r = m["s.batch"] / m["c.durable"];   printf "| batched durable enqueue ≥ 3× C single-job durable | %.2f× | %s |\n", r, verdict(r >= 3)
    r = m["s.finish"] / m["c.finish"];   printf "| claim + finish ≥ 0.5× C (one at a time, same calls) | %.2f× | %s |\n", r, verdict(r >= 0.5)
    rb = m["s.fbatch"] / m["k.consume"]; ru = m["s.finish"] / m["k.consume"]
    if (wb) {
        printf "| consume ≥ 10× kombu consume: claim + `finish(batch:)`, what the worker uses (its ResultCommitter) | %.1f× | %s |\n", rb, verdict(rb >= 10)
        printf "| (consume, one finish at a time, not what the worker does) | %.1f× | (%s) |\n", ru, (ru >= 10 ? "would pass" : "would fail")
    } else {
        printf "| consume ≥ 10× kombu consume: claim + finish one at a time, what the worker does (it does not call `finish(batch:)`) | %.1f× | %s |\n", ru, verdict(ru >= 10)
        printf "| (consume with claim + `finish(batch:)` of %d, once a worker batches its finishes) | %.1f× | (%s) |\n", batch, rb, (rb >= 10 ? "would pass" : "would fail")
    }
    r = m["s.batch"] / m["k.publish"];   printf "| batched durable enqueue > kombu publish | %.2f× | %s |\n", r, verdict(r > 1)
    printf "\nSpread over the %d runs (min–max jobs/s): ", reps
    spread("s.durable", "durable enqueue llmspool"); spread("c.durable", ", C")
    spread("s.batch", "; batched enqueue llmspool"); spread("c.batch", ", C")
    spread("s.volatile", "; volatile llmspool"); spread("c.volatile", ", C")
    spread("s.claim", "; claim llmspool"); spread("c.claim", ", C")
    spread("s.finish", "; claim + finish llmspool"); spread("c.finish", ", C")
    spread("s.fbatch", "; batched finish llmspool"); spread("c.fbatch", ", C")
    spread("k.publish", "; kombu publish"); spread("k.consume", ", consume")
    printf ".\n"
}' "$RAW"
if (( NOISY > 0 )); then echo; echo "Warning: $NOISY of the runs started while other processes kept the CPU over 20 % busy."; fi

echo >&2
echo "raw rates: $RAW" >&2
if [[ ${KEEP:-0} != 1 ]]; then
    # Unlinking is slow on this file system (~1.5k files/s): do it in the background. Wait for it
    # to finish before measuring again: creating files while many are being deleted is much slower.
    mv "$RAW" "$BASE/last-raw.txt"
    echo "raw rates moved to $BASE/last-raw.txt; removing $RUN in the background" >&2
    rm -f "$BASE/.cleanup.done"
    nohup bash -c 'nice -n 19 rm -rf "$1"; sync; touch "$2/.cleanup.done"' cleanup "$RUN" "$BASE" >/dev/null 2>&1 &
    echo $! >"$BASE/.cleanup.pid"
fi
