#!/usr/bin/env python3
"""The reference: CPython's json.loads (its C scanner) on the same files, least and median ms of N
(thread CPU time, as json-bench measures)."""
import json, sys, time

reps = 21
args = sys.argv[1:]
if args[:1] == ["--reps"]:
    reps, args = int(args[1]), args[2:]
for path in args:
    data = open(path, "rb").read()
    times = []
    for _ in range(reps):
        t = time.thread_time_ns()
        json.loads(data)
        times.append(time.thread_time_ns() - t)
    times.sort()
    name = path.rsplit("/", 1)[-1]
    print(f"{name} py_min_ms={times[0] / 1e6:.2f} py_median_ms={times[len(times) // 2] / 1e6:.2f}")
