#!/usr/bin/env bash
# llmspool-cgi against a C reference CGI doing the same durable write, under the same lighttpd,
# in the same run: wrk POSTs at 16 connections (req/s) and at 1 connection (p50), each twice in
# ABBA order and averaged, plus the program's start-up (exec to exit on a canned request) with
# hyperfine.
# Needs: lighttpd wrk hyperfine cc. Usage: bench/cgi/run.sh [seconds per run, default 10]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS="${1:-10}"
swift build -c release --product llmspool-cgi >/dev/null
CGI="$(swift build -c release --show-bin-path)/llmspool-cgi"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/llmspool-cgi-bench.XXXXXX")"
trap 'kill $(cat "$WORK/lighttpd.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cc -O2 -o "$WORK/ref-cgi" bench/cgi/ref-cgi.c
for s in swift ref; do mkdir -p "$WORK/$s"/{tmp,new,cur,done,failed}; done
printf 'sha256:%s bench acme\n' "$(printf bench-token | sha256sum | cut -d' ' -f1)" > "$WORK/tokens"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/lighttpd.conf" <<CONF
server.document-root = "$WORK"
server.bind = "127.0.0.1"
server.port = $PORT
server.errorlog = "$WORK/error.log"
server.pid-file = "$WORK/lighttpd.pid"
server.max-worker = 0
var.llmspool_cgi = "$CGI"
var.llmspool_spool = "$WORK/swift"
var.llmspool_tokens = "$WORK/tokens"
include "$PWD/contrib/lighttpd.conf"
# No worker runs, so new/ only grows: raise the waiting-job limit above what a run can reach, so
# that every request is a durable enqueue like the reference's (the count of new/ still runs).
\$HTTP["url"] =~ "^/jobs(/|\$)" {
    setenv.add-environment += ( "LLMSPOOL_MAX_WAITING" => "10000000" )
}
alias.url += ( "/ref" => "$WORK/ref-cgi" )
\$HTTP["url"] =~ "^/ref" {
    cgi.assign = ( "" => "" )
    setenv.add-environment = ( "LLMSPOOL_SPOOL" => "$WORK/ref" )
}
CONF
lighttpd -f "$WORK/lighttpd.conf"
sleep 0.5
BASE="http://127.0.0.1:$PORT"
curl -sf -o /dev/null -X POST -H 'Authorization: Bearer bench-token' -H 'Content-Type: text/plain' --data x "$BASE/jobs"
curl -sf -o /dev/null -X POST --data x "$BASE/ref"

# wrk counts every answer; a run with any answer but 2xx measured something else: stop there.
wrkrun() {
    wrk "$@" > "$WORK/wrk.out"
    if grep -q 'Non-2xx' "$WORK/wrk.out"; then echo "non-2xx answers:" >&2; cat "$WORK/wrk.out" >&2; return 1; fi
    cat "$WORK/wrk.out"
}
rps() { wrkrun -t2 -c16 -d"${SECS}s" -s bench/cgi/post.lua "$1" | awk '/Requests\/sec/ {print $2}'; }
p50() { wrkrun -t1 -c1 -d"${SECS}s" --latency -s bench/cgi/post.lua "$1" | awk '$1=="50%" {print $2}'; }
ms() { case "$1" in *us) awk -v v="${1%us}" 'BEGIN{print v/1000}';; *ms) echo "${1%ms}";; *s) awk -v v="${1%s}" 'BEGIN{print v*1000}';; esac; }

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
mean() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (a+b)/2}'; }
# Each measure twice, in the order reference, llmspool, llmspool, reference, and averaged: the
# machine is shared, and a load that drifts during the run then weighs on both alike.
echo "== 16 connections, ${SECS}s each"
R1=$(rps "$BASE/ref"); S1=$(rps "$BASE/jobs"); S2=$(rps "$BASE/jobs"); R2=$(rps "$BASE/ref")
REF_RPS=$(mean "$R1" "$R2"); SW_RPS=$(mean "$S1" "$S2")
echo "== 1 connection"
R1=$(ms "$(p50 "$BASE/ref")"); S1=$(ms "$(p50 "$BASE/jobs")"); S2=$(ms "$(p50 "$BASE/jobs")"); R2=$(ms "$(p50 "$BASE/ref")")
REF_P50=$(mean "$R1" "$R2"); SW_P50=$(mean "$S1" "$S2")

BACKLOG="$(ls "$WORK/swift/new" | wc -l) / $(ls "$WORK/ref/new" | wc -l)"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

echo "== start-up (exec to exit, canned durable POST, on a fresh spool)"
for s in swift ref; do rm -rf "$WORK/$s"; mkdir -p "$WORK/$s"/{tmp,new,cur,done,failed}; done
printf 'Summarise RFC 3875 in one line' > "$WORK/body"
START=$(cd "$WORK" && hyperfine -N 2>/dev/null --warmup 20 --runs 300 --export-json "$WORK/h.json" \
    "env REQUEST_METHOD=GET PATH_INFO=/jobs/none REMOTE_USER=bench LLMSPOOL_SPOOL=$WORK/swift $CGI" >/dev/null;
    python3 -c "import json;r=json.load(open('$WORK/h.json'))['results'][0];print('%.2f %.2f'%(r['mean']*1000,r['median']*1000))")
POST=$(cd "$WORK" && hyperfine 2>/dev/null --warmup 20 --runs 300 --export-json "$WORK/p.json" \
    "REQUEST_METHOD=POST PATH_INFO=/jobs CONTENT_TYPE=text/plain CONTENT_LENGTH=30 REMOTE_USER=bench LLMSPOOL_SPOOL=$WORK/swift $CGI < $WORK/body" >/dev/null;
    python3 -c "import json;r=json.load(open('$WORK/p.json'))['results'][0];print('%.2f %.2f'%(r['mean']*1000,r['median']*1000))")
REFSTART=$(cd "$WORK" && hyperfine 2>/dev/null --warmup 20 --runs 300 --export-json "$WORK/r.json" \
    "REQUEST_METHOD=POST CONTENT_LENGTH=30 LLMSPOOL_SPOOL=$WORK/ref $WORK/ref-cgi < $WORK/body" >/dev/null;
    python3 -c "import json;r=json.load(open('$WORK/r.json'))['results'][0];print('%.2f %.2f'%(r['mean']*1000,r['median']*1000))")

cat <<OUT

| measure | llmspool-cgi | C reference | ratio |
|---|---|---|---|
| req/s, 16 connections (higher is better) | $SW_RPS | $REF_RPS | $(awk -v a="$SW_RPS" -v b="$REF_RPS" 'BEGIN{printf "%.2f×", a/b}') |
| p50 latency, 1 connection, ms (lower is better) | $SW_P50 | $REF_P50 | $(awk -v a="$SW_P50" -v b="$REF_P50" 'BEGIN{printf "%.2f×", a/b}') |
| start-up, GET (404), exec to exit, mean / median ms | ${START/ / \/ } | | |
| start-up, durable POST (202), mean / median ms | ${POST/ / \/ } | ${REFSTART/ / \/ } | |

Jobs in new/ after the wrk runs (llmspool / reference): $BACKLOG. Load average (1, 5, 15 min)
before the wrk runs: $LOAD_BEFORE; after: $LOAD_AFTER ($(nproc) cores).
OUT
