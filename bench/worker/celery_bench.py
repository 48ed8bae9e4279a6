#!/usr/bin/env python3
"""The peer: a Celery worker on kombu's filesystem broker running N no-op tasks, in tasks/s.

Usage: celery_bench.py DIR N    (DIR: a fresh directory on the disk under test; pip install celery)
Prints one line ending in `tasks/s=RATE`. Publishing and the worker's start-up are not timed:
the clock runs from the first task's completion to the last (each task appends a byte to a file).
"""
import os
import subprocess
import sys
import time

d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.join(d, "queue"), exist_ok=True)
os.makedirs(os.path.join(d, "processed"), exist_ok=True)
app_py = os.path.join(d, "benchapp.py")
with open(app_py, "w") as f:
    f.write(f'''
from celery import Celery
app = Celery("benchapp", broker="filesystem://")
app.conf.broker_transport_options = {{"data_folder_in": {os.path.join(d, "queue")!r},
                                      "data_folder_out": {os.path.join(d, "queue")!r},
                                      "processed_folder": {os.path.join(d, "processed")!r}}}
app.conf.task_ignore_result = True
app.conf.worker_hijack_root_logger = False
COUNT = {os.path.join(d, "count")!r}

@app.task
def noop():
    with open(COUNT, "ab") as f:
        f.write(b".")
''')
sys.path.insert(0, d)
os.chdir(d)  # kombu's filesystem transport keeps its control exchange under the working directory
from benchapp import noop  # noqa: E402

for _ in range(n):
    noop.delay()
count = os.path.join(d, "count")
open(count, "wb").close()
start = time.time()
worker = subprocess.Popen(["celery", "-A", "benchapp", "worker", "--pool=solo", "--loglevel=ERROR", "--without-gossip",
                           "--without-mingle", "--without-heartbeat"], cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    while os.path.getsize(count) < 1:
        time.sleep(0.001)
    start = time.time()
    while os.path.getsize(count) < n:
        if time.time() - start > 300:
            sys.exit("celery did not finish in 300 s (%d of %d)" % (os.path.getsize(count), n))
        time.sleep(0.05)
    secs = time.time() - start
    n -= 1
finally:
    worker.kill()
print("celery filesystem-broker worker n=%d secs=%.3f tasks/s=%d" % (n, secs, round(n / secs)))
