#!/usr/bin/env python3
"""A streaming stand-in LLM for bench/stream/run.sh: exact timing, many streams, little CPU.

POST .../chat/completions with "stream": true gets, after --ttft-ms, --tokens text deltas (or
the tokens=K the request's prompt names) at
--rate tokens/s, then a finish chunk, a usage chunk and [DONE] (HTTP/1.1 chunked, keep-alive).
Each delta's text is "SEQ@MICROS " where MICROS is CLOCK_REALTIME in µs taken just before the
write, so a client on the same host can tell how long that token took to reach it. Without
"stream" the answer is one canned completion (as bench/worker/nginx.conf's).

One ticker serves every stream: streams are put into --rate-period phase slots of 1 ms by their
first-token time, and each 1 ms tick writes the slot that is due. No timer per stream, so 1,000
streams at 50 tokens/s cost one Python loop wake-up per millisecond, not 50,000 a second.

Prints its port on stdout's first line. Usage: standin.py [--tokens N] [--rate R] [--ttft-ms T]
"""
import argparse
import asyncio
import json
import os
import re
import socket
import time

try:
    import uvloop  # type: ignore
except ImportError:  # plain asyncio works, a little slower
    uvloop = None

ap = argparse.ArgumentParser()
ap.add_argument("--tokens", type=int, default=100)
ap.add_argument("--rate", type=float, default=50.0)
ap.add_argument("--ttft-ms", type=float, default=200.0)
ap.add_argument("--port", type=int, default=0)
args = ap.parse_args()

PERIOD_MS = max(1, int(round(1000.0 / args.rate)))
CANNED = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "model": "stand-in",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": "A canned answer from the stand-in."},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}}).encode()
HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")
PRE = b'data: {"id":"c","object":"chat.completion.chunk","model":"stand-in","choices":[{"index":0,"delta":{"content":"'
POST = b'"},"finish_reason":null}]}\n\n'
TAIL_EVENTS = (b'data: {"id":"c","object":"chat.completion.chunk","model":"stand-in","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
               b'data: {"id":"c","object":"chat.completion.chunk","model":"stand-in","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":%d,"total_tokens":%d}}\n\n'
               b"data: [DONE]\n\n")


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


slots: list[list["Stream"]] = [[] for _ in range(PERIOD_MS)]
stats = {"streams": 0, "plain": 0, "tokens": 0}


class Stream:
    __slots__ = ("transport", "sent", "slot", "tokens")

    def __init__(self, transport, tokens):
        self.transport = transport
        self.sent = 0
        self.slot = -1
        self.tokens = tokens


class Conn(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = b""
        self.t.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4:end + 4 + length]
            self.buf = self.buf[end + 4 + length:]
            self.request(head.split(" ")[1], body)

    def request(self, path, body):
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = {}
        if not doc.get("stream"):
            stats["plain"] += 1
            self.t.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(CANNED), CANNED))
            return
        stats["streams"] += 1
        m = re.search(rb"tokens=(\d+)", body)  # a prompt may ask for its own length
        s = Stream(self.t, int(m.group(1)) if m else args.tokens)
        asyncio.get_running_loop().call_later(args.ttft_ms / 1000.0, first, s)


def first(s: Stream):
    if s.transport.is_closing():
        return
    s.transport.write(HEAD)
    send_token(s)
    # Streams take the slots in turn, so streams started together do not tick together; the
    # second token comes 1 ms to one period after the first, the rest one period apart.
    global spread
    spread += 1
    s.slot = (last_ms + spread) % PERIOD_MS
    slots[s.slot].append(s)


def send_token(s: Stream) -> bool:
    if s.sent < s.tokens:
        text = b"%d@%d " % (s.sent, time.time_ns() // 1000)
        s.transport.write(chunk(PRE + text + POST))
        s.sent += 1
        stats["tokens"] += 1
        return True
    tail = TAIL_EVENTS % (s.tokens, s.tokens + 12)
    s.transport.write(chunk(tail) + b"0\r\n\r\n")
    return False


last_ms = int(time.monotonic() * 1000)
spread = 0


def tick(loop, when):
    # Serves every slot whose millisecond has come since the last tick (a late tick skips none).
    global last_ms
    now_ms = int(time.monotonic() * 1000)
    for ms in range(max(last_ms + 1, now_ms - PERIOD_MS + 1), now_ms + 1):
        slot = ms % PERIOD_MS
        keep = []
        for s in slots[slot]:
            if s.transport.is_closing():
                continue
            if send_token(s):
                keep.append(s)
        slots[slot] = keep
    last_ms = max(last_ms, now_ms)
    nxt = when + 0.001
    now = loop.time()
    if nxt < now:
        nxt = now
    loop.call_at(nxt, tick, loop, nxt)


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Conn, "127.0.0.1", args.port, backlog=4096, reuse_address=True)
    print(server.sockets[0].getsockname()[1], flush=True)
    loop.call_soon(tick, loop, loop.time())
    stop = asyncio.Event()
    import signal
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    print(json.dumps(stats), flush=True)


if uvloop is not None:
    uvloop.install()
asyncio.run(main())
