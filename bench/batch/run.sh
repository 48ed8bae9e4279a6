#!/usr/bin/env bash
# Batch API: accepting a 50,000-line file, against `llmspool submit FILE…` of the same 50,000 jobs
# (one group commit each), and assembling the output of 50,000 results. One run, same disk, same
# build; each side on a fresh spool. Usage: bench/batch/run.sh [LINES] (default 50000).
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-50000}"
swift build -c release --product llmspool >/dev/null
swift build -c release --product llmspool-cgi >/dev/null
bin=.build/release/llmspool cgi=.build/release/llmspool-cgi
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-batch.XXXXXX")
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }

# The same requests as a batch file and as job files.
python3 - "$work" "$n" <<'PY'
import json, os, sys
work, n = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{work}/jobs")
with open(f"{work}/in.jsonl", "w") as f:
    for i in range(n):
        msgs = [{"role": "user", "content": f"prompt number {i}: say something short"}]
        f.write(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/chat/completions",
                            "body": {"model": "m", "messages": msgs, "max_tokens": 16}}) + "\n")
        with open(f"{work}/jobs/{i}.json", "w") as j:
            json.dump({"jobId": f"j{i}", "messages": msgs, "model": "m", "maxTokens": 16, "userId": "alice"}, j)
PY
printf 'sha256:%s alice\n' "$(printf %s tok | sha256sum | cut -d' ' -f1)" > "$work/tokens"

# Reference: llmspool submit FILE… (all validated, one group commit per invocation), as few
# invocations as the kernel's argument limit allows (xargs -s 1 MB: one for 50,000 short names).
# `submit` sets its file operands aside before parsing the options, so its cost is linear in
# their number (ArgumentParser's own grows with the square: 20,000 took 25 s before).
"$bin" init "$work/ref" >/dev/null
sync
t0=$(now); (cd "$work/jobs" && ls | xargs -s 1000000 "$OLDPWD/$bin" submit --spool "$work/ref" >/dev/null); t1=$(now)
ref=$(echo "$t1 - $t0" | bc)

# The Batch API through the CGI program, as a server runs it: upload, then create.
"$bin" init "$work/api" >/dev/null
sync
cgi_env=(GATEWAY_INTERFACE=CGI/1.1 LLMSPOOL_SPOOL="$work/api" LLMSPOOL_TOKENS="$work/tokens" HTTP_AUTHORIZATION="Bearer tok")
boundary=XbenchX
{ printf -- '--%s\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n' $boundary
  printf -- '--%s\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n\r\n' $boundary
  cat "$work/in.jsonl"; printf -- '\r\n--%s--\r\n' $boundary; } > "$work/upload"
t0=$(now)
file_id=$(env "${cgi_env[@]}" REQUEST_METHOD=POST PATH_INFO=/v1/files CONTENT_TYPE="multipart/form-data; boundary=$boundary" \
    CONTENT_LENGTH=$(stat -c %s "$work/upload") "$cgi" < "$work/upload" | tr -d '\r' | sed -n 's/.*"id":"\(file-[^"]*\)".*/\1/p')
t1=$(now)
body="{\"input_file_id\":\"$file_id\",\"endpoint\":\"/v1/chat/completions\",\"completion_window\":\"24h\"}"
created=$(printf %s "$body" | env "${cgi_env[@]}" REQUEST_METHOD=POST PATH_INFO=/v1/batches CONTENT_TYPE=application/json \
    CONTENT_LENGTH=${#body} "$cgi")
t2=$(now)
batch_id=$(printf %s "$created" | tr -d '\r' | sed -n 's/.*"id":"\(batch_[^"]*\)".*/\1/p')
printf %s "$created" | grep -q '"status":"in_progress"' || { echo "create failed: $created" >&2; exit 1; }
upload=$(echo "$t1 - $t0" | bc); create=$(echo "$t2 - $t1" | bc); api=$(echo "$t2 - $t0" | bc)

# Answer them all (builtin:echo), then time the read that assembles the output.
"$bin" worker --spool "$work/api" --llm-url builtin:echo --log-level error --concurrency 512 &
worker=$!
while [ "$(ls "$work/api/done" | wc -l)" -lt "$n" ]; do sleep 0.5; done
kill -TERM $worker; wait $worker || true
t0=$(now); "$bin" batch status --spool "$work/api" "$batch_id" > "$work/status"; t1=$(now)
assemble=$(echo "$t1 - $t0" | bc)
t0=$(now); "$bin" batch status --spool "$work/api" "$batch_id" >/dev/null; t1=$(now)
reread=$(echo "$t1 - $t0" | bc)
grep -q completed "$work/status" || { echo "not completed: $(cat "$work/status")" >&2; exit 1; }
lines=$("$bin" batch results --spool "$work/api" "$batch_id" | wc -l)

printf '%s requests, load %s\n' "$n" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-58s %8.2f s\n' "llmspool submit FILE… (reference, one call)" "$ref"
printf '%-58s %8.2f s  (upload %.2f s + create %.2f s)\n' "Batch API through the CGI: upload → in_progress" "$api" "$upload" "$create"
printf '%-58s %8.2f x\n' "ratio (target ≤ 2)" "$(echo "$api / $ref" | bc -l)"
printf '%-58s %8.2f s  (%s output lines)\n' "first read after the last job settled: assemble the output" "$assemble" "$lines"
printf '%-58s %8.2f s\n' "a later read (counts only)" "$reread"
