#!/usr/bin/env python3
"""A stand-in for an OpenAI-compatible LLM server, for llmspool's tests. Python stdlib only.

Serves POST /v1/chat/completions (any path ending in /chat/completions) on 127.0.0.1 at an
ephemeral port, printed as the first line on stdout. GET /stats returns
{"connections": accepted connections, "requests": requests seen, "waiting": requests held
at a gate}; GET /release/NAME opens gate NAME. GET /prompts returns {prompt: requests seen} (to count
how often each job was sent).

Faults for every request (GET, answered at once):
  /faults?p429=P&p500=Q&seed=S   from now on, answer each chat request 429 with probability P,
                                 else 500 with probability Q (P=Q=0: off); random.Random(S)
  /outage?refuse=S&fail=T        a provider outage: the listening socket is closed for S seconds
                                 (connections are refused; requests on connections already open
                                 are dropped unanswered), then every chat request gets 503 for T
                                 seconds. /stats then also counts "outage_requests" (requests that
                                 reached the server during the outage), "outage_started" and
                                 "outage_ended" (time.time() values).

The behaviour comes from the header `X-Fake` or, failing that, from a prompt (last message)
starting with `fake:`; a comma-separated list of options:
  (none)           200, the content is "echo: <last message>"
  latency=MS       sleep MS milliseconds, then as above
  status=N         answer N with an OpenAI-style error body; with retry-after=S and/or
                   retry-after-ms=MS headers if given
  fail=K,key=X     the first K requests with key X get 500, later ones succeed
                   (failstatus=N: N instead of 500, with retry-after=S if given)
  drop             read the request, then close the connection without answering
  hang             read the request and never answer
  malformed        200 with a truncated JSON body
  auth             200, the content is the Authorization header received (or "none")
  big=N            200 with an N-byte content
  gate=NAME        hold the request until GET /release/NAME (at most 60 s), then as above
  remaining=R      answer with x-ratelimit-remaining-requests: R and x-ratelimit-reset-requests: 1s

A Batch API stand-in (OpenAI's shapes), for the worker's provider batches:
  POST /v1/files                 multipart/form-data with purpose=batch and file: stores it, {"id": "file-N"}
  GET  /v1/files/ID/content      the file's bytes
  POST /v1/batches               {"input_file_id", "endpoint", "completion_window", "metadata"}: a batch that
                                 runs its lines after the configured delay (each answered as a chat request
                                 would be: "echo: <last message>", or the error of a fake:status=N prompt)
  GET  /v1/batches/ID, GET /v1/batches?limit=N&after=ID (newest first), POST /v1/batches/ID/cancel
  GET  /batch-config?delay=S&outcome=completed|failed|expired&answer=K&drop=K&dup=1&unknown=1&upload500=K
                     &hold_upload=1&hold_create=1
                                 for batches created from now on: finish after S seconds (default 0.5) as
                                 `outcome`; with expired, only the first K lines are answered (the rest get
                                 batch_expired in the error file); drop=K leaves K lines out of the output;
                                 dup repeats the first output line; unknown adds a line for an unknown
                                 custom_id; upload500=K fails the next K uploads with 500; hold_upload /
                                 hold_create hold those requests (after they took effect) until
                                 GET /release/upload or /release/create.
  /stats counts "files_uploaded", "batches_created", "batches_cancelled", "batch_lines" and "batch_http" (every
  /v1/files and /v1/batches request); GET /batch-prompts
  returns {prompt: times run in a batch}.

Streaming (a request with "stream": true gets text/event-stream, chunked, one chunk per word of
"echo: <last message>", a usage chunk, then [DONE]; a ": keep-alive" comment first):
  chunkms=MS       sleep MS milliseconds before each chunk
  crlf             lines end with CRLF instead of LF
  nostream         ignore "stream" and answer one JSON body
  nousage          send no usage chunk
  cut=K            after K content chunks, close the connection mid-body (no last chunk)
  cutfirst=K,key=X as cut=K for the first request with key X only; later ones complete
  stall=K          after K content chunks, send nothing more (hold the connection)
  stallms=MS       with stall=K: the stall lasts MS milliseconds, then the answer goes on
  stallfirst=K,key=X  as stall=K for the first request with key X only; later ones do not stall
  errorevent=K     after K content chunks, an `event: error` with an OpenAI-style error, then end
  badchunk=K       content chunk K (from 1) is not JSON
Options: --tls CERT KEY serves HTTPS.
"""
import json
import os
import random
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
stats = {"connections": 0, "requests": 0, "waiting": 0}
fail_counts = {}


def count_call(opts):
    """How many calls with this key= came before this one (each counted once)."""
    key = opts.get("key", "")
    with lock:
        seen = fail_counts.get(key, 0)
        fail_counts[key] = seen + 1
    return seen

prompt_counts = {}
gates = {}
faults = {"p429": 0.0, "p500": 0.0, "random": random.Random(0)}
outage = {"mode": None}  # None, "refuse" or "fail"
the_server = None
reopened = threading.Event()
files = {}
batches = {}
batch_order = []
batch_prompts = {}
batch_config = {"delay": 0.5, "outcome": "completed", "answer": 0, "drop": 0, "dup": False, "unknown": False,
                "upload500": 0, "hold_upload": False, "hold_create": False}
for key in ("files_uploaded", "batches_created", "batches_cancelled", "batch_lines", "batch_http"):
    stats[key] = 0


def chat_answer(request, n):
    """(status, body) for one chat request body, as the live handler answers the simple cases."""
    messages = request.get("messages") or [{"content": ""}]
    prompt = str(messages[-1].get("content", ""))
    with lock:
        batch_prompts[prompt] = batch_prompts.get(prompt, 0) + 1
    opts = parse_behaviour(None, prompt)
    if "status" in opts:
        status = int(opts["status"])
        return status, {"error": {"message": "fake status %d" % status, "type": "fake_error", "code": status}}
    content = "echo: " + prompt
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
    completion_tokens = len(content.split())
    return 200, {
        "id": "chatcmpl-b%d" % n, "object": "chat.completion", "created": int(time.time()),
        "model": request.get("model", "fake"),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def new_file(content, purpose):
    with lock:
        fid = "file-%d" % (len(files) + 1)
        files[fid] = {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                      "filename": "", "purpose": purpose, "content": content}
    return fid


def run_batch(bid, config):
    time.sleep(config["delay"])
    with lock:
        b = batches[bid]
        if b["status"] in ("cancelling", "cancelled"):
            b["status"] = "cancelled"
            return
        content = files[b["input_file_id"]]["content"]
    lines = [l for l in content.decode().split("\n") if l.strip()]
    if config["outcome"] == "failed":
        with lock:
            b["status"] = "failed"
            b["failed_at"] = int(time.time())
            b["errors"] = {"object": "list", "data": [{"code": "fake_failure", "message": "the stand-in failed this batch"}]}
        return
    answered = len(lines) if config["outcome"] != "expired" else config["answer"]
    out, err = [], []
    for k, text in enumerate(lines):
        line = json.loads(text)
        if k >= answered:
            err.append({"id": "batch_req_%s_%d" % (bid, k), "custom_id": line["custom_id"], "response": None,
                        "error": {"code": "batch_expired", "message": "This request could not be executed before the completion window expired."}})
            continue
        with lock:
            stats["batch_lines"] += 1
        status, body = chat_answer(line["body"], k)
        out.append({"id": "batch_req_%s_%d" % (bid, k), "custom_id": line["custom_id"],
                    "response": {"status_code": status, "request_id": "req-%s-%d" % (bid, k), "body": body}, "error": None})
    if config["drop"]:
        out = out[config["drop"]:]
    if config["dup"] and out:
        out.append(out[0])
    if config["unknown"]:
        out.append({"id": "batch_req_x", "custom_id": "no-such-job", "response": {"status_code": 200, "request_id": "x",
                    "body": {"choices": [{"message": {"role": "assistant", "content": "stray"}}]}}, "error": None})
    with lock:
        if b["status"] in ("cancelling", "cancelled"):
            b["status"] = "cancelled"
            return
    out_id = new_file("".join(json.dumps(o) + "\n" for o in out).encode(), "batch_output") if out else None
    err_id = new_file("".join(json.dumps(e) + "\n" for e in err).encode(), "batch_output") if err else None
    with lock:
        b["output_file_id"] = out_id
        b["error_file_id"] = err_id
        b["status"] = "expired" if config["outcome"] == "expired" else "completed"
        b["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        b["completed_at"] = int(time.time())


def parse_multipart(content_type, raw):
    boundary = content_type.partition("boundary=")[2].strip().strip('"').encode()
    fields = {}
    for part in raw.split(b"--" + boundary):
        part = part.strip(b"\r\n")
        if not part or part == b"--":
            continue
        head, _, body = part.partition(b"\r\n\r\n")
        name = head.decode(errors="replace").partition('name="')[2].partition('"')[0]
        fields[name] = body
    return fields


def gate(name):
    with lock:
        return gates.setdefault(name, threading.Event())


def parse_behaviour(header, prompt):
    text = header or (prompt[5:] if prompt.startswith("fake:") else "")
    options = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, _, value = part.partition("=")
        options[key.strip()] = value.strip()
    return options


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-llm/1"
    # Headers and body go out in two writes: without this, Nagle's algorithm holds the body back
    # until the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        with lock:
            stats["connections"] += 1

    def log_message(self, format, *args):
        pass

    def send_json(self, status, document, extra_headers=()):
        body = json.dumps(document).encode()
        self.send_bytes(status, body, extra_headers)

    def send_bytes(self, status, body, extra_headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/v1/") or self.path.startswith("/batch-"):
            return self.batch_get()
        if self.path == "/prompts":
            with lock:
                snapshot = dict(prompt_counts)
            self.send_json(200, snapshot)
            return
        if self.path.startswith("/faults?") or self.path.startswith("/outage?"):
            query = dict(p.partition("=")[::2] for p in self.path.partition("?")[2].split("&") if p)
            if self.path.startswith("/faults?"):
                with lock:
                    faults["p429"] = float(query.get("p429", 0))
                    faults["p500"] = float(query.get("p500", 0))
                    faults["random"] = random.Random(int(query.get("seed", 0)))
            else:
                threading.Thread(target=run_outage, args=(float(query.get("refuse", 0)), float(query.get("fail", 0))),
                                 daemon=True).start()
            self.send_json(200, {})
            return
        if self.path == "/stats":
            with lock:
                self.send_json(200, dict(stats))
        elif self.path.startswith("/release/"):
            gate(self.path[len("/release/"):]).set()
            self.send_json(200, {})
        else:
            self.send_json(404, {"error": {"message": "no such path"}})

    def batch_get(self):
        if self.path.startswith("/v1/"):
            with lock:
                stats["batch_http"] += 1
        path, _, query = self.path.partition("?")
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        if path == "/batch-config":
            with lock:
                for k, v in params.items():
                    if k in ("delay",):
                        batch_config[k] = float(v)
                    elif k in ("answer", "drop", "upload500"):
                        batch_config[k] = int(v)
                    elif k in ("dup", "unknown", "hold_upload", "hold_create"):
                        batch_config[k] = v not in ("0", "", "false")
                    else:
                        batch_config[k] = v
                if params.get("hold_upload") == "1":
                    gates.pop("upload", None)
                if params.get("hold_create") == "1":
                    gates.pop("create", None)
            return self.send_json(200, {k: v for k, v in batch_config.items()})
        if path == "/batch-prompts":
            with lock:
                return self.send_json(200, dict(batch_prompts))
        if path.startswith("/v1/files/") and path.endswith("/content"):
            fid = path[len("/v1/files/"):-len("/content")]
            with lock:
                f = files.get(fid)
            if f is None:
                return self.send_json(404, {"error": {"message": "no such file"}})
            return self.send_bytes(200, f["content"])
        if path == "/v1/batches":
            limit = int(params.get("limit", 20))
            with lock:
                order = list(reversed(batch_order))
                if "after" in params and params["after"] in order:
                    order = order[order.index(params["after"]) + 1:]
                page = [dict(batches[b]) for b in order[:limit]]
                more = len(order) > limit
            return self.send_json(200, {"object": "list", "data": page, "has_more": more,
                                        "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None})
        if path.startswith("/v1/batches/"):
            with lock:
                b = batches.get(path[len("/v1/batches/"):])
                b = dict(b) if b else None
            if b is None:
                return self.send_json(404, {"error": {"message": "no such batch"}})
            return self.send_json(200, b)
        return self.send_json(404, {"error": {"message": "no such path"}})

    def batch_post(self, raw):
        with lock:
            stats["batch_http"] += 1
        path = self.path.partition("?")[0]
        if path == "/v1/files":
            with lock:
                fail = batch_config["upload500"] > 0
                if fail:
                    batch_config["upload500"] -= 1
            if fail:
                return self.send_json(500, {"error": {"message": "fake upload failure", "type": "server_error"}})
            fields = parse_multipart(self.headers.get("Content-Type", ""), raw)
            if fields.get("purpose", b"").strip() != b"batch" or "file" not in fields:
                return self.send_json(400, {"error": {"message": "purpose=batch and a file are required"}})
            fid = new_file(fields["file"], "batch")
            with lock:
                stats["files_uploaded"] += 1
                hold = batch_config["hold_upload"]
            if hold:
                gate("upload").wait(60)
            return self.send_json(200, {k: v for k, v in files[fid].items() if k != "content"})
        if path == "/v1/batches":
            request = json.loads(raw)
            fid = request.get("input_file_id")
            with lock:
                if fid not in files:
                    return self.send_json(400, {"error": {"message": "no such input file"}})
                stats["batches_created"] += 1
                bid = "batch_%d" % stats["batches_created"]
                batches[bid] = {"id": bid, "object": "batch", "endpoint": request.get("endpoint"), "errors": None,
                                "input_file_id": fid, "completion_window": request.get("completion_window"),
                                "status": "in_progress", "output_file_id": None, "error_file_id": None,
                                "created_at": int(time.time()), "metadata": request.get("metadata"),
                                "request_counts": {"total": 0, "completed": 0, "failed": 0}}
                batch_order.append(bid)
                config = dict(batch_config)
            threading.Thread(target=run_batch, args=(bid, config), daemon=True).start()
            if config["hold_create"]:
                gate("create").wait(60)
            with lock:
                return self.send_json(200, dict(batches[bid]))
        if path.startswith("/v1/batches/") and path.endswith("/cancel"):
            bid = path[len("/v1/batches/"):-len("/cancel")]
            with lock:
                b = batches.get(bid)
                if b is None:
                    return self.send_json(404, {"error": {"message": "no such batch"}})
                stats["batches_cancelled"] += 1
                if b["status"] not in ("completed", "failed", "expired"):
                    b["status"] = "cancelled"
                return self.send_json(200, dict(b))
        return self.send_json(404, {"error": {"message": "no such path " + path}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.startswith("/v1/files") or self.path.startswith("/v1/batches"):
            return self.batch_post(raw)
        with lock:
            stats["requests"] += 1
            n = stats["requests"]
        if not self.path.endswith("/chat/completions"):
            self.send_json(404, {"error": {"message": "no such path " + self.path}})
            return
        try:
            request = json.loads(raw)
            messages = request["messages"]
            prompt = messages[-1]["content"]
        except Exception as e:
            self.send_json(400, {"error": {"message": "bad request body: %s" % e, "type": "invalid_request_error"}})
            return
        with lock:
            prompt_counts[prompt] = prompt_counts.get(prompt, 0) + 1
            mode = outage["mode"]
            if mode:
                stats["outage_requests"] = stats.get("outage_requests", 0) + 1
            draw = faults["random"].random() if faults["p429"] + faults["p500"] > 0 else 1.0
        request_id = "req-%d" % n
        if mode == "refuse":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if mode == "fail":
            self.send_json(503, {"error": {"message": "fake outage", "type": "server_error"}}, [("x-request-id", request_id)])
            return
        if draw < faults["p429"]:
            self.send_json(429, {"error": {"message": "fake rate limit", "type": "rate_limit_error"}}, [("x-request-id", request_id)])
            return
        if draw < faults["p429"] + faults["p500"]:
            self.send_json(500, {"error": {"message": "fake random failure", "type": "server_error"}}, [("x-request-id", request_id)])
            return
        opts = parse_behaviour(self.headers.get("X-Fake"), prompt)

        if "gate" in opts:
            with lock:
                stats["waiting"] += 1
            gate(opts["gate"]).wait(60)
            with lock:
                stats["waiting"] -= 1
        if "latency" in opts:
            time.sleep(int(opts["latency"]) / 1000.0)
        if "hang" in opts:
            time.sleep(3600)
            return
        if "drop" in opts:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if "fail" in opts:
            seen = count_call(opts)
            if seen < int(opts["fail"]):
                headers = [("x-request-id", request_id)]
                if "retry-after" in opts:
                    headers.append(("Retry-After", opts["retry-after"]))
                self.send_json(int(opts.get("failstatus", "500")),
                               {"error": {"message": "fake failure %d of %s" % (seen + 1, opts["fail"]),
                                          "type": "server_error"}}, headers)
                return
        if "status" in opts:
            status = int(opts["status"])
            headers = [("x-request-id", request_id)]
            if "retry-after" in opts:
                headers.append(("Retry-After", opts["retry-after"]))
            if "retry-after-ms" in opts:
                headers.append(("retry-after-ms", opts["retry-after-ms"]))
            self.send_json(status, {"error": {"message": "fake status %d" % status, "type": "fake_error",
                                              "code": status}}, headers)
            return
        if "malformed" in opts:
            self.send_bytes(200, b'{"id": "chatcmpl-x", "choices": [{"message": {"role": "assistant", "cont')
            return

        if request.get("stream") is True and "nostream" not in opts:
            self.stream_answer(request, opts, prompt, messages, request_id)
            return
        if "auth" in opts:
            content = self.headers.get("Authorization") or "none"
        elif "big" in opts:
            content = "x" * int(opts["big"])
        else:
            content = "echo: " + prompt
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        completion_tokens = len(content.split())
        self.send_json(200, {
            "id": "chatcmpl-%d" % n,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }, [
            ("x-request-id", request_id),
            ("x-ratelimit-limit-requests", "10000"),
            ("x-ratelimit-remaining-requests", opts.get("remaining", "9999")),
            ("x-ratelimit-reset-requests", "1s" if "remaining" in opts else "6m0s"),
            ("x-ratelimit-limit-tokens", "1000000"),
            ("x-ratelimit-remaining-tokens", "999000"),
            ("x-ratelimit-reset-tokens", "12ms"),
        ])


    def stream_answer(self, request, opts, prompt, messages, request_id):
        content = "echo: " + prompt
        words = []
        for k, w in enumerate(content.split(" ")):
            words.append(w if k == 0 else " " + w)
        nl = "\r\n" if "crlf" in opts else "\n"
        cut = int(opts["cut"]) if "cut" in opts else None
        if "cutfirst" in opts and count_call(opts) == 0:
            cut = int(opts["cutfirst"])
        stall = int(opts["stall"]) if "stall" in opts else None
        if "stallfirst" in opts and count_call(opts) == 0:
            stall = int(opts["stallfirst"])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", request_id)
        self.end_headers()

        def chunk(text):
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def event(obj, name=None):
            text = ("event: " + name + nl if name else "") + "data: " + (obj if isinstance(obj, str) else json.dumps(obj)) + nl + nl
            chunk(text)

        def drop():
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        delay = int(opts.get("chunkms", "0")) / 1000.0
        chunk(": keep-alive" + nl + nl)
        base = {"id": request_id, "object": "chat.completion.chunk", "model": request.get("model", "fake")}
        for k, w in enumerate(words, 1):
            if delay:
                time.sleep(delay)
            if "badchunk" in opts and int(opts["badchunk"]) == k:
                event('{"id": "x", "choices": [{"delta": {"content": "tr')
                continue
            event(dict(base, choices=[{"index": 0, "delta": {"content": w}, "finish_reason": None}]))
            if cut is not None and k == cut:
                drop()
                return
            if stall is not None and stall == k:
                if "stallms" not in opts:
                    time.sleep(3600)
                    return
                time.sleep(int(opts["stallms"]) / 1000.0)
            if "errorevent" in opts and int(opts["errorevent"]) == k:
                event({"error": {"message": "fake overload mid-stream", "type": "server_error"}}, name="error")
                chunk("")
                return
        event(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if "nousage" not in opts:
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
            event(dict(base, choices=[], usage={"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                                                "total_tokens": prompt_tokens + len(words)}))
        event("[DONE]")
        chunk("")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096

    def handle_error(self, request, client_address):
        # Clients that give up (timeouts, cancellation, failed TLS handshakes) are expected here.
        pass


def run_outage(refuse, fail):
    """Closes the listener for `refuse` seconds, then answers 503 for `fail` seconds."""
    server = the_server
    port = server.server_address[1]
    with lock:
        stats["outage_started"] = time.time()
        stats["outage_requests"] = 0
        outage["mode"] = "refuse"
    server.shutdown()  # serve_forever returns; main() waits for `reopened`
    server.socket.close()
    time.sleep(refuse)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(server.request_queue_size)
    server.socket = listener
    with lock:
        outage["mode"] = "fail"
    reopened.set()
    time.sleep(fail)
    with lock:
        outage["mode"] = None
        stats["outage_ended"] = time.time()


def exit_with_parent(parent):
    """Exits when the test process that started this server is gone, however it ended."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


def main():
    # A parent's blocked or ignored signals are inherited (Swift's thread pool blocks SIGTERM):
    # make `kill` work again.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    server = Server(("127.0.0.1", 0), Handler)
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = context.wrap_socket(server.socket, server_side=True)
    global the_server
    the_server = server
    print(server.server_address[1], flush=True)
    while True:
        server.serve_forever(poll_interval=0.1)
        reopened.wait()  # an outage shut the listener: serve again once it is back
        reopened.clear()


if __name__ == "__main__":
    main()
