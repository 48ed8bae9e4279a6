#!/usr/bin/env python3
"""Drives llmspool's Batch API with the official `openai` SDK, unchanged: only base_url and
api_key are set. Used by Tests/SubmitTests/BatchTests.swift against a real web server with a
worker (builtin:echo) behind it.

usage: openai_batch.py BASE_URL API_KEY LINES [TIMEOUT_SECONDS]
Prints one JSON summary line; exits 1 when anything is off (the reason is in the summary).
"""
import io
import json
import sys
import time

import openai

base, key, lines = sys.argv[1], sys.argv[2], int(sys.argv[3])
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 300
client = openai.OpenAI(base_url=base, api_key=key, max_retries=0, timeout=120)
problems = []
summary = {}

# One request per line, each with its own custom_id and a prompt the echo model repeats.
body = "".join(
    json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "echo", "messages": [{"role": "user", "content": f"answer {i}"}], "max_tokens": 16,
                         "top_p": 1}}) + "\n"
    for i in range(lines))
started = time.monotonic()
f = client.files.create(file=("requests.jsonl", io.BytesIO(body.encode())), purpose="batch")
summary["upload_s"] = round(time.monotonic() - started, 3)
if f.bytes != len(body.encode()) or f.purpose != "batch":
    problems.append(f"file object: {f}")
if client.files.retrieve(f.id).id != f.id:
    problems.append("files.retrieve")

b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                          metadata={"suite": "llmspool"})
summary["create_s"] = round(time.monotonic() - started - summary["upload_s"], 3)
summary["created_status"] = b.status
if b.status not in ("validating", "in_progress"):
    problems.append(f"created as {b.status}: {b.errors}")

deadline = time.monotonic() + timeout
while b.status not in ("completed", "failed", "expired", "cancelled") and time.monotonic() < deadline:
    time.sleep(0.5)
    b = client.batches.retrieve(b.id)
summary["status"] = b.status
summary["request_counts"] = b.request_counts.model_dump() if b.request_counts else None
summary["done_s"] = round(time.monotonic() - started, 3)
if b.status != "completed":
    problems.append(f"batch ended {b.status}")
else:
    text = client.files.content(b.output_file_id).text
    answered = {}
    for raw in text.splitlines():
        line = json.loads(raw)
        cid = line["custom_id"]
        answered[cid] = answered.get(cid, 0) + 1
        content = line["response"]["body"]["choices"][0]["message"]["content"]
        if line["response"]["status_code"] != 200 or line["error"] is not None or content != "answer " + cid[4:]:
            problems.append(f"line for {cid}: {raw[:300]}")
            break
    summary["answered"] = len(answered)
    summary["answered_twice"] = sum(1 for v in answered.values() if v > 1)
    if len(answered) != lines or summary["answered_twice"]:
        problems.append(f"{len(answered)} of {lines} custom_ids answered, {summary['answered_twice']} twice")
    if b.request_counts.completed != lines or b.request_counts.failed != 0:
        problems.append(f"request_counts {b.request_counts}")

listed = [x.id for x in client.batches.list(limit=10)]
if b.id not in listed:
    problems.append(f"batches.list lacks {b.id}: {listed}")

# A second batch, cancelled at once: it ends cancelled (or completed if the worker was faster).
f2 = client.files.create(file=("two.jsonl", io.BytesIO(body.encode())), purpose="batch")
b2 = client.batches.create(input_file_id=f2.id, endpoint="/v1/chat/completions", completion_window="24h")
c = client.batches.cancel(b2.id)
while c.status == "cancelling" and time.monotonic() < deadline:
    time.sleep(0.5)
    c = client.batches.retrieve(b2.id)
summary["cancelled_status"] = c.status
if c.status not in ("cancelled", "completed"):
    problems.append(f"cancel ended {c.status}")

# Bad input fails the batch at validation and names the line.
bad = client.files.create(file=("bad.jsonl", io.BytesIO(b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"messages":[{"role":"user","content":"x"}]}}\n{"custom_id":"a","method":"POST","url":"/v1/embeddings","body":{}}\n')), purpose="batch")
v = client.batches.create(input_file_id=bad.id, endpoint="/v1/chat/completions", completion_window="24h")
summary["bad_status"] = v.status
summary["bad_errors"] = [(e.code, e.line) for e in (v.errors.data if v.errors else [])]
if v.status != "failed" or not v.errors or v.errors.data[0].line != 2:
    problems.append(f"bad file: {v}")
try:
    client.files.create(file=("x.jsonl", io.BytesIO(b"{}")), purpose="fine-tune")
    problems.append("purpose fine-tune accepted")
except openai.BadRequestError:
    pass
client.files.delete(f.id)
try:
    client.files.retrieve(f.id)
    problems.append("deleted file still there")
except openai.NotFoundError:
    pass

summary["problems"] = problems
print(json.dumps(summary))
sys.exit(1 if problems else 0)
