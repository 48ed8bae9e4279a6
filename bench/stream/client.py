#!/usr/bin/env python3
"""The measuring side of bench/stream/run.sh: SSE clients, on asyncio (uvloop when installed).

  client.py direct URL N            N concurrent streamed calls straight to the stand-in
  client.py cgi BASE TOKEN N PIDS   N streamed jobs POSTed through the CGI with the worker stopped,
                                    N event streams opened, then "ready" on stdout: the caller
                                    starts the worker and writes its pid to the file PIDS
  client.py ttft-direct URL K       K calls one after another: time to first token
  client.py ttft-cgi BASE TOKEN K   K jobs one after another, each POSTed then followed

Each token's text is "SEQ@MICROS " (bench/stream/standin.py): its latency is the receive time
(CLOCK_REALTIME, read as soon as the bytes are read from the socket) minus MICROS. Prints one
JSON object: latency percentiles (ms), time to first token, and for "cgi" the check that every
stream's text equals its job's final response with the tokens 0…N-1 once each, and CPU.
"""
import asyncio
import json
import os
import re
import sys
import time

try:
    import uvloop  # type: ignore
except ImportError:
    uvloop = None

TOKEN = re.compile(rb"(\d+)@(\d+) ")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def now_us() -> int:
    return time.time_ns() // 1000


def pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


class HTTP:
    """One HTTP/1.1 request on its own connection; the body is read as it comes (chunked or not)."""

    def __init__(self, url):
        m = re.match(r"http://([^:/]+):(\d+)(/.*)?", url)
        self.host, self.port, self.base = m.group(1), int(m.group(2)), (m.group(3) or "")

    async def open(self, method, path, headers, body=b""):
        r, w = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        head = "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n" % (
            method, self.base + path, self.host, len(body))
        head += "".join("%s: %s\r\n" % kv for kv in headers.items())
        w.write(head.encode() + b"\r\n" + body)
        status = int((await r.readline()).split()[1])
        hdrs = {}
        while True:
            line = (await r.readline()).strip()
            if not line:
                break
            k, _, v = line.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()
        return status, hdrs, r, w

    @staticmethod
    async def pieces(hdrs, r):
        """Yields (bytes, receive time µs) as they arrive."""
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await r.readline()).strip() or b"0", 16)
                if size == 0:
                    return
                data = await r.readexactly(size + 2)
                yield data[:-2], now_us()
        else:
            while True:
                data = await r.read(65536)
                if not data:
                    return
                yield data, now_us()


async def sse(hdrs, r):
    """Yields (event, data bytes, receive time µs) for each complete event."""
    buf = b""
    async for data, t in HTTP.pieces(hdrs, r):
        buf += data.replace(b"\r\n", b"\n")
        while True:
            end = buf.find(b"\n\n")
            if end < 0:
                break
            block, buf = buf[:end], buf[end + 2:]
            event, lines = "message", []
            for line in block.split(b"\n"):
                if line.startswith(b"event:"):
                    event = line[6:].strip().decode()
                elif line.startswith(b"data:"):
                    lines.append(line[5:].lstrip(b" "))
            if lines:
                yield event, b"\n".join(lines), t


def stamp(latencies, text: bytes, t):
    """Adds (latency ms, receive time µs, token number) for each token in `text`."""
    for m in TOKEN.finditer(text):
        latencies.append(((t - int(m.group(2))) / 1000.0, t, int(m.group(1))))


async def direct_call(url, latencies, tokens):
    h = HTTP(url)
    body = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "x tokens=%d" % tokens}]}).encode()
    t0 = now_us()
    status, hdrs, r, w = await h.open("POST", "/chat/completions", {"Content-Type": "application/json"}, body)
    first = None
    async for event, data, t in sse(hdrs, r):
        if data == b"[DONE]":
            break
        doc = json.loads(data)
        if doc.get("choices") and doc["choices"][0]["delta"].get("content"):
            text = doc["choices"][0]["delta"]["content"].encode()
            if first is None:
                first = (t - t0) / 1000.0
            stamp(latencies, text, t)
    w.close()
    return first


class Job:
    def __init__(self):
        self.id = None
        self.text = b""
        self.restarts = 0
        self.response = None
        self.state = None
        self.first = None
        self.t0 = None


async def post_job(h, token, prompt):
    body = json.dumps({"prompt": prompt, "stream": True}).encode()
    for attempt in range(20):
        try:
            status, hdrs, r, w = await h.open("POST", "/jobs", {"Authorization": "Bearer " + token, "Content-Type": "application/json"}, body)
            rest = b""
            async for data, _ in HTTP.pieces(hdrs, r):
                rest += data
            w.close()
            if status == 202:
                return json.loads(rest)["jobId"]
        except (ConnectionError, OSError):
            pass
        await asyncio.sleep(0.05 * (attempt + 1))
    raise SystemExit("POST /jobs kept failing: %s" % status)


async def follow(h, token, job: Job, latencies, on_first=None):
    status, hdrs, r, w = await h.open("GET", "/jobs/%s/events" % job.id, {"Authorization": "Bearer " + token, "Accept": "text/event-stream"})
    if status != 200:
        job.state = "http-%d" % status
        print("GET /jobs/%s/events: %d %s" % (job.id, status, (await r.read(2000))[:300]), file=sys.stderr)
        w.close()
        return
    async for event, data, t in sse(hdrs, r):
        if event == "delta":
            text = json.loads(data)["text"].encode()
            if job.first is None:
                job.first = t
                if on_first:
                    on_first()
            job.text += text
            stamp(latencies, text, t)
        elif event == "restart":
            job.text = b""
            job.restarts += 1
        elif event in ("done", "failed", "cancelled"):
            if event != "done":
                print("job %s: %s %s" % (job.id, event, data[:300]), file=sys.stderr)
            job.state = event
            job.response = (json.loads(data).get("response") or "").encode()
            break
    else:
        job.state = job.state or "cut"  # the stream ended without a final event
        print("job %s: the event stream ended without a final event" % job.id, file=sys.stderr)
    w.close()


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def summary(samples):
    """Percentiles over every token (the measure), then split: by when the token came (the first
    second after the run's first token — the start, with every stream's claim, first call and
    partial file — against the rest) and by its place in its stream (the first token, the last
    five, the others). SAMPLES=FILE also writes every sample: latency ms, receive µs, token number."""
    lat = [x[0] for x in samples]
    out = {"chunks": len(lat), "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "max_ms": max(lat) if lat else None}
    if not samples:
        return out
    t0 = min(x[1] for x in samples)
    top = max(x[2] for x in samples)
    groups = {
        "first_second": [x[0] for x in samples if x[1] - t0 < 1_000_000],
        "after_first_second": [x[0] for x in samples if x[1] - t0 >= 1_000_000],
        "token_0": [x[0] for x in samples if x[2] == 0],
        "tokens_middle": [x[0] for x in samples if 0 < x[2] < top - 4],
        "tokens_last_5": [x[0] for x in samples if x[2] >= top - 4],
    }
    out["split"] = {k: {"n": len(v), "p50_ms": pct(v, 0.5), "p99_ms": pct(v, 0.99), "max_ms": max(v) if v else None} for k, v in groups.items()}
    # The worst 1 %: when they came (ms after the first token, in 100 ms bins) and which tokens.
    worst = sorted(samples, key=lambda x: -x[0])[: max(1, len(samples) // 100)]
    bins = {}
    for x in worst:
        b = (x[1] - t0) // 100_000 * 100
        bins[b] = bins.get(b, 0) + 1
    out["worst_1pct_by_100ms"] = dict(sorted(bins.items()))
    if os.environ.get("SAMPLES"):
        with open(os.environ["SAMPLES"], "w") as f:
            for x in samples:
                f.write("%.3f %d %d\n" % x)
    return out


async def main():
    mode = sys.argv[1]
    if mode == "direct":
        url, n = sys.argv[2], int(sys.argv[3])
        lat = []
        firsts = await asyncio.gather(*(direct_call(url, lat, int(os.environ.get("TOKENS", "100"))) for _ in range(n)))
        print(json.dumps({"mode": mode, "streams": n, **summary(lat), "ttft_p50_ms": pct(firsts, 0.5)}))
    elif mode == "ttft-direct":
        url, k = sys.argv[2], int(sys.argv[3])
        firsts = [await direct_call(url, [], 5) for _ in range(k)]
        print(json.dumps({"mode": mode, "calls": k, "ttft_p50_ms": pct(firsts, 0.5), "ttft_mean_ms": sum(firsts) / k, "all": firsts}))
    elif mode == "ttft-cgi":
        base, token, k = sys.argv[2], sys.argv[3], int(sys.argv[4])
        h = HTTP(base)
        firsts, bad = [], 0
        for i in range(k):
            job = Job()
            job.t0 = now_us()
            job.id = await post_job(h, token, "ttft %d tokens=5" % i)
            await follow(h, token, job, [])
            firsts.append((job.first - job.t0) / 1000.0)
            bad += job.text != job.response
        print(json.dumps({"mode": mode, "jobs": k, "ttft_p50_ms": pct(firsts, 0.5), "ttft_mean_ms": sum(firsts) / k, "mismatched": bad, "all": firsts}))
    elif mode == "cgi":
        base, token, n, pidfile = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        h = HTTP(base)
        jobs = [Job() for _ in range(n)]
        sem = asyncio.Semaphore(16)

        async def post(j, i):
            async with sem:
                j.id = await post_job(h, token, "bench stream %d tokens=%d" % (i, int(os.environ.get("TOKENS", "100"))))
        await asyncio.gather(*(post(j, i) for i, j in enumerate(jobs)))
        lat = []
        marks = {}
        started = [0]
        pid = [None]

        def sample(name):
            if pid[0] is None:
                with open(pidfile) as f:
                    pid[0] = int(f.read())
            marks[name] = (time.monotonic(), cpu_ticks(pid[0]), load())

        def on_first():
            started[0] += 1
            if started[0] == n:
                sample("all-started")

        followers = [asyncio.ensure_future(follow(h, token, j, lat, on_first)) for j in jobs]
        await asyncio.sleep(1.0)  # every GET has reached the CGI and waits on inotify
        print("ready", flush=True)
        done_first = asyncio.ensure_future(asyncio.wait(followers, return_when=asyncio.FIRST_COMPLETED))
        await done_first
        sample("first-done")
        await asyncio.gather(*followers)
        sample("all-done")
        mismatched = [j.id for j in jobs if j.state != "done" or j.text != j.response]
        # A stream whose text is a proper prefix of the result lost its last deltas (the reader was
        # behind when the partial file was removed; the done event's response still has them).
        tail = [j for j in jobs if j.state == "done" and j.text != j.response and (j.response or b"").startswith(j.text)]
        tail_tokens = sum(len(TOKEN.findall(j.response[len(j.text):])) for j in tail)
        badseq = []
        for j in jobs:
            seqs = [int(m.group(1)) for m in TOKEN.finditer(j.response or b"")]
            if seqs != list(range(len(seqs))) or not seqs:
                badseq.append(j.id)
        out = {"mode": mode, "streams": n, **summary(lat), "tokens_per_stream": len(list(TOKEN.finditer(jobs[0].response or b""))),
               "mismatched": len(mismatched), "tail_missing": len(tail), "tail_tokens_missing": tail_tokens,
               "repeated_or_other": len(mismatched) - len(tail), "bad_sequence": len(badseq), "restarts": sum(j.restarts for j in jobs),
               "examples": mismatched[:3] + badseq[:3]}
        if "all-started" in marks:
            (t1, c1, _), (t2, c2, l2) = marks["all-started"], marks["first-done"]
            if t2 > t1:
                out["worker_cpu_steady_cores"] = round((c2 - c1) / CLK_TCK / (t2 - t1), 3)
                out["steady_seconds"] = round(t2 - t1, 2)
                out["load_at_first_done"] = l2
        print(json.dumps(out), flush=True)


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


if uvloop is not None:
    uvloop.install()
asyncio.run(main())
