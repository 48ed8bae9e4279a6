#!/usr/bin/env python3
"""Power-loss trials for llmspool (run through Tests/powerloss/run.sh, which builds what this needs).

Each trial runs a scenario's commands on a fresh ext4 that sits on LazyFS, cuts the power at a
random moment (the harness freezes the commands first, so nothing is acknowledged after the cut),
then checks what survived with llmspool's own tools: `recover`, `status --json`, and a fresh
worker that drains the spool. An item is acknowledged when its line reached the trial's stdout.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

STATES = ["new", "cur", "done", "failed", "forwarded"]
ARGS = None


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- one trial under LazyFS

class Trial:
    """One run of the harness: a fresh filesystem at `fs`, a script run in it, a power cut."""

    def __init__(self, scenario, index, script, delay, env=None, mount_options=None):
        self.harness_args = ["-m", ARGS.mode] + (["-o", mount_options] if mount_options and ARGS.mode == "block" else [])
        self.base = os.path.join(ARGS.out, f"s{scenario}-t{index:04d}")
        shutil.rmtree(self.base, ignore_errors=True)
        os.makedirs(self.base)
        self.fs = os.path.join(self.base, "fs")
        self.state = self.fs + ".lazyfs"
        self.script = os.path.join(self.base, "trial.sh")
        with open(self.script, "w") as f:
            f.write("set -u\nexport PATH=\"$PL_BIN:$PATH\" LLMSPOOL_LOG_LEVEL=warning\n" + script)
        # The crash point is drawn here and handed to the harness as MIN:MIN. (run.sh seeds mawk's
        # srand with "$RANDOM$$", which is above 2^31 about half the time; mawk then gives every
        # such trial the same "random" point — 1.144 s of 0.3:2.0 — so half the cuts fell at one instant.)
        lo, hi = (float(x) for x in delay.split(":"))
        self.delay = f"{random.uniform(lo, hi):.3f}"
        self.delay = f"{self.delay}:{self.delay}"
        if ARGS.no_journal:
            env = dict(env or {}, MKE2FS_CONFIG=ARGS.no_journal)
        self.env = dict(os.environ, LAZYFS_BIN=ARGS.lazyfs, PL_BIN=ARGS.bin, PL_SCRATCH=self.base, PL_IN=ARGS.inputs, **(env or {}))
        self.problems = []

    def run(self):
        self.started = time.time()
        r = subprocess.run(["bash", ARGS.harness, "-d", self.delay, *self.harness_args, self.fs, "--", "bash", self.script],
                           env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.rc = r.returncode
        if self.rc not in (0, 3):
            raise SystemExit(f"harness failed (exit {self.rc}) in {self.base}: {r.stdout[-2000:]}")
        crash = open(os.path.join(self.state, "crash.txt")).read()
        m = re.search(r"crash in ([0-9.]+)s", crash)
        self.crash_at = float(m.group(1)) if m else -1.0
        m = re.search(r"e2fsck -fn exit (\d+)", crash)
        self.fsck = int(m.group(1)) if m else -1
        out = open(os.path.join(self.state, "stdout"), errors="replace").read()
        # A line counts only once its newline was written: the cut may freeze a writer mid-line.
        self.lines = out.split("\n")[:-1]
        self.acks = [l.split() for l in self.lines if l.startswith("ack ")]
        self.stderr = open(os.path.join(self.state, "stderr"), errors="replace").read()
        self.cut_done = time.time()
        # The image is 64 MiB a trial: keep it only when asked.
        if not ARGS.keep:
            shutil.rmtree(os.path.join(self.state, "root"), ignore_errors=True)
        return self

    def problem(self, msg):
        self.problems.append(msg)

    def finish(self):
        if not self.problems and not ARGS.keep:
            shutil.rmtree(self.base, ignore_errors=True)


# ---------------------------------------------------------------- llmspool's own tools

def llmspool(*args, check=True, timeout=60, **kw):
    r = subprocess.run([os.path.join(ARGS.bin, "llmspool"), *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"llmspool {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def scan(spool):
    """id -> [(state, file name)], from the canonical names in every state directory."""
    found = {}
    for state in STATES:
        d = os.path.join(spool, state)
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            if name.startswith(".") or state == "failed" and name.endswith(".original"):
                continue
            found.setdefault(name[:-5] if name.endswith(".json") else name, []).append((state, name))
    return found


def read_json(path):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None


def job_of(spool, state, name):
    """The job document at state/name (for done/ and failed/, the job inside the result)."""
    doc = read_json(os.path.join(spool, state, name))
    if doc is None:
        return None
    return doc.get("job") if state in ("done", "failed") else doc


def recover_and_status(t, spool):
    """`llmspool recover`, then `status --json`: what the project itself says after the cut."""
    r = llmspool("recover", "--spool", spool, check=False)
    if r.returncode != 0:
        t.problem(f"recover exit {r.returncode}: {r.stderr.strip()[:300]}")
    s = llmspool("status", "--json", "--spool", spool, check=False)
    try:
        return json.loads(s.stdout)
    except ValueError:
        t.problem(f"status --json is not JSON: {s.stdout[:200]} {s.stderr[:200]}")
        return {}


def drain(t, spool, timeout=60):
    """A fresh worker (builtin:echo) until new/ and cur/ are empty; then SIGTERM."""
    def pending():
        return sum(1 for s in ("new", "cur") for n in os.listdir(os.path.join(spool, s)) if not n.startswith("."))
    if not pending():
        return
    env = dict(os.environ, LLMSPOOL_LOG_LEVEL="warning")
    w = subprocess.Popen([os.path.join(ARGS.bin, "llmspool"), "worker", "--spool", spool, "--llm-url", "builtin:echo"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + timeout
    while pending() and time.time() < deadline and w.poll() is None:
        time.sleep(0.05)
    left = pending()
    w.send_signal(signal.SIGTERM)
    try:
        _, err = w.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        w.kill()
        _, err = w.communicate()
    if left:
        t.problem(f"a fresh worker left {left} jobs in new/ and cur/ after {timeout}s: {err[-300:]}")
    if w.returncode != 0:
        t.problem(f"the fresh worker exited {w.returncode}: {err[-300:]}")


def torn_files(spool, state="new"):
    """Files in STATE/ that are not a whole, valid job: what a worker would dead-letter."""
    bad = []
    d = os.path.join(spool, state)
    for name in os.listdir(d):
        if name.startswith("."):
            continue
        doc = read_json(os.path.join(d, name))
        if not isinstance(doc, dict) or not expected_prompt_ok(doc.get("prompt")):
            size = os.path.getsize(os.path.join(d, name))
            bad.append(f"{state}/{name} ({size} bytes)")
    return bad


# Every job's prompt is "pl TAG LEN " followed by LEN x's, so a file cut short is never whole.
def prompt_for(tag, longest=9000):
    n = random.randint(100, longest)
    return f"pl {tag} {n} " + "x" * n


def expected_prompt_ok(prompt, tag=None):
    if not isinstance(prompt, str):
        return False
    m = re.match(r"pl (\S+) (\d+) (x*)$", prompt)
    return bool(m) and len(m.group(3)) == int(m.group(2)) and (tag is None or m.group(1) == tag)


def write_job(path, tag, job_id=None):
    doc = {"prompt": prompt_for(tag)}
    if job_id:
        doc = {"jobId": job_id, **doc}
    with open(path, "w") as f:
        json.dump(doc, f)


def check_acked(t, spool, acked, label="acknowledged"):
    """acked: {id: tag}. Each must be in exactly one state, whole. Returns the number lost."""
    found = scan(spool)
    lost = 0
    for jid, tag in acked.items():
        places = found.get(jid, [])
        if not places:
            lost += 1
            t.problem(f"{label} job {jid} ({tag}) is in no state")
            continue
        if len(places) > 1:
            t.problem(f"{label} job {jid} is in {len(places)} places: {places}")
        state, name = places[0]
        job = job_of(spool, state, name)
        if not isinstance(job, dict) or not expected_prompt_ok(job.get("prompt"), tag):
            t.problem(f"{label} job {jid} in {state}/ is not whole")
    return lost


def check_drained(t, spool, acked):
    """After the fresh worker: every acknowledged job has one result, nothing was dead-lettered."""
    found = scan(spool)
    dups = 0
    for jid, tag in acked.items():
        places = found.get(jid, [])
        if [s for s, _ in places] != ["done"]:
            t.problem(f"after draining, job {jid} is in {places}, not in done/ alone")
        else:
            doc = read_json(os.path.join(spool, "done", places[0][1]))
            if not doc or doc.get("jobId") != jid or not expected_prompt_ok((doc.get("job") or {}).get("prompt"), tag):
                t.problem(f"done/{jid}.json is not a whole result of its job")
    failed = [n for n in os.listdir(os.path.join(spool, "failed")) if not n.startswith(".")]
    if failed:
        t.problem(f"{len(failed)} dead letters after draining (a torn or clashing file taken for a job): {failed[:5]}")
    # Duplicates: two spool files (in any state) carrying one job's tag.
    tags = {}
    for jid, places in found.items():
        for state, name in places:
            job = job_of(spool, state, name)
            m = re.match(r"pl (\S+) ", (job or {}).get("prompt", "")) if isinstance(job, dict) else None
            if m:
                tags.setdefault(m.group(1), []).append(f"{state}/{name}")
    for tag, where in tags.items():
        if len(where) > 1:
            dups += len(where) - 1
            t.problem(f"tag {tag} is in {len(where)} files: {where}")
    return dups


def fsck_ok(t):
    # Without a journal, e2fsck finds the damage a cut leaves in the filesystem's own metadata;
    # that is counted (fsck_clean), not held against llmspool.
    if ARGS.mode == "block" and not ARGS.no_journal and t.fsck != 0:
        t.problem(f"e2fsck -fn exit {t.fsck} after the cut (see {t.state}/fsck.txt)")


# ---------------------------------------------------------------- scenarios

def prepare_inputs():
    """Job documents, written once per run (on ext4 without a journal, creating files where many
    were just deleted is slow): single jobs sN (no jobId: llmspool mints one) and 5-job batches
    bN-K (with jobIds), outside the filesystem that loses power."""
    d = os.path.join(ARGS.out, "in")
    os.makedirs(d)
    for n in range(400):
        write_job(os.path.join(d, f"s{n}.json"), f"s{n}")
    for n in range(150):
        for k in range(5):
            write_job(os.path.join(d, f"b{n}-{k}.json"), f"b{n}-{k}", job_id=f"b{n}-{k}")
    return d


SUBMIT_LOOP = r"""
llmspool init spool >/dev/null || exit 1
IN=$PL_IN
for n in $(seq 0 399); do
  if [ $((n % 4)) = 3 ] && [ -n "$BATCHES" ] && [ -e $IN/b$n-0.json ]; then
    out=$(llmspool submit --spool spool $FLAGS $IN/b$n-0.json $IN/b$n-1.json $IN/b$n-2.json $IN/b$n-3.json $IN/b$n-4.json) || continue
    for id in $out; do echo "ack $id $id"; done
  else
    id=$(llmspool submit --spool spool $FLAGS - < $IN/s$n.json) && echo "ack s$n $id"
  fi
done
"""


def scenario_enqueue(index, volatile=False):
    t = Trial(5 if volatile else 1, index, SUBMIT_LOOP, "0.3:3.0" if volatile else "0.3:2.0",
              env={"FLAGS": "--volatile" if volatile else "", "BATCHES": "1"},
              # --volatile: ext4 commits its journal every second instead of every 5 s, so that
              # short trials show what survives a commit and what the cut takes after it.
              mount_options="commit=1" if volatile else None)
    t.run()
    spool = os.path.join(t.fs, "spool")
    acked = {a[2]: a[1] for a in t.acks}
    res = dict(acks=len(acked), lost=0, dups=0, crash=t.crash_at, rc=t.rc)
    fsck_ok(t)
    if not os.path.isdir(os.path.join(spool, "new")):
        if acked and not volatile:
            t.problem(f"the spool is gone but {len(acked)} jobs were acknowledged")
        res["lost"] = len(acked)
        return t, res
    recover_and_status(t, spool)
    torn = torn_files(spool)
    if torn:
        t.problem(f"{len(torn)} torn files in new/ (half-written, would be taken for jobs): {torn[:5]}")
    res["torn"] = len(torn)
    if volatile:
        # Not durable by design: count what was lost, and check what is there is whole.
        found = scan(spool)
        survived = {j: g for j, g in acked.items() if j in found}
        # Not counted as "lost": --volatile promises nothing for them.
        res["volatile_lost"] = len(acked) - len(survived)
        check_acked(t, spool, survived)
        acked = survived
        # The non-acknowledged survivors are jobs too: drain them, and check them below.
    else:
        res["lost"] = check_acked(t, spool, acked)
    drain(t, spool)
    res["dups"] = check_drained(t, spool, acked)
    return t, res


CGI_LOOP = r"""
llmspool init spool >/dev/null || exit 1
IN=$PL_IN
post() {  # post KEY BODYFILE: the CGI's whole answer on stdout
  REQUEST_METHOD=POST PATH_INFO=/jobs SCRIPT_NAME=/cgi CONTENT_TYPE=application/json \
  CONTENT_LENGTH=$(stat -c %s "$2") REMOTE_USER=alice LLMSPOOL_TENANT=acme LLMSPOOL_SPOOL=spool \
  HTTP_IDEMPOTENCY_KEY=$1 llmspool-cgi < "$2"
}
for n in $(seq 0 399); do
  echo "try key-$n"
  ans=$(post key-$n $IN/s$n.json)
  id=$(printf '%s' "$ans" | grep -o '"jobId":"[^"]*"' | head -1 | cut -d'"' -f4)
  case $ans in "Status: 202"*) echo "ack s$n $id key-$n";; esac
  if [ $((n % 5)) = 4 ]; then   # a client retrying its last request
    ans=$(post key-$n $IN/s$n.json)
    id2=$(printf '%s' "$ans" | grep -o '"jobId":"[^"]*"' | head -1 | cut -d'"' -f4)
    case $ans in "Status: 202"*) echo "replay s$n $id2 key-$n";; esac
  fi
done
"""


def cgi_post(spool, key, body_file):
    env = dict(os.environ, REQUEST_METHOD="POST", PATH_INFO="/jobs", SCRIPT_NAME="/cgi",
               CONTENT_TYPE="application/json", CONTENT_LENGTH=str(os.path.getsize(body_file)),
               REMOTE_USER="alice", LLMSPOOL_TENANT="acme", LLMSPOOL_SPOOL=spool, HTTP_IDEMPOTENCY_KEY=key)
    with open(body_file, "rb") as f:
        r = subprocess.run([os.path.join(ARGS.bin, "llmspool-cgi")], stdin=f, env=env, stdout=subprocess.PIPE, timeout=30)
    out = r.stdout.decode("utf-8", "replace")
    status = out.split("\r\n", 1)[0].split("\n", 1)[0]
    m = re.search(r'"jobId":"([^"]*)"', out)
    return status, (m.group(1) if m else None)


def scenario_cgi(index):
    t = Trial(2, index, CGI_LOOP, "0.3:2.0")
    t.run()
    spool = os.path.join(t.fs, "spool")
    acked = {a[2]: a[1] for a in t.acks}
    keys = {a[3]: a[2] for a in t.acks}
    res = dict(acks=len(acked), lost=0, dups=0, crash=t.crash_at, rc=t.rc)
    fsck_ok(t)
    for l in t.lines:
        if l.startswith("replay "):
            _, tag, jid, key = l.split()
            if keys.get(key) != jid:
                t.problem(f"a replay of {key} answered {jid}, the first answer was {keys.get(key)}")
    if not os.path.isdir(os.path.join(spool, "new")):
        res["lost"] = len(acked)
        if acked:
            t.problem("the spool is gone after 202s")
        return t, res
    recover_and_status(t, spool)
    torn = torn_files(spool)
    if torn:
        t.problem(f"{len(torn)} torn files in new/: {torn[:5]}")
    res["lost"] = check_acked(t, spool, acked, "accepted (202)")
    # The idempotency records must agree with the jobs: every key tried, sent again, answers 202
    # with the job first accepted for it (a record whose job was lost would point at nothing).
    tried = [l.split()[1] for l in t.lines if l.startswith("try ")]
    for key in tried:
        n = int(key.split("-")[1])
        status, jid = cgi_post(spool, key, os.path.join(ARGS.inputs, f"s{n}.json"))
        if not status.startswith("Status: 202"):
            t.problem(f"after recovery, {key} again got {status!r}")
        elif key in keys and jid != keys[key]:
            t.problem(f"after recovery, {key} again got job {jid}, but {keys[key]} was accepted for it")
        elif key not in keys:
            acked.setdefault(jid, f"s{n}")
    res["records"] = len(os.listdir(os.path.join(spool, ".idempotency"))) if os.path.isdir(os.path.join(spool, ".idempotency")) else 0
    # Every record names a job that exists now.
    rec_dir = os.path.join(spool, ".idempotency")
    found = scan(spool)
    for name in os.listdir(rec_dir) if os.path.isdir(rec_dir) else []:
        doc = read_json(os.path.join(rec_dir, name))
        if not doc or doc.get("jobId") not in found:
            t.problem(f"idempotency record {name} names no job: {doc}")
    drain(t, spool)
    res["dups"] = check_drained(t, spool, acked)
    return t, res


WORKER_LOOP = r"""
llmspool init spool >/dev/null || exit 1
IN=$PL_IN
for n in 0 1 2; do   # 60 jobs waiting before the worker starts, in three group commits
  out=$(llmspool submit --spool spool $(for k in 0 1 2 3 4; do for j in 0 1 2 3; do echo $IN/b$((n*4+j))-$k.json; done; done)) || exit 1
  for id in $out; do echo "ack $id $id"; done
done
llmspool worker --spool spool --llm-url 'builtin:echo?delay=30ms' --concurrency 16 2>$PL_SCRATCH/worker.err &
waiter() {   # submit --wait: the id, then the response once the result is in done/
  for n in $(seq $1 3 399); do
    out=$(llmspool submit --spool spool --wait --timeout 20s - < $IN/s$n.json) || continue
    id=$(printf '%s\n' "$out" | head -1)
    echo "ack s$n $id"
    printf '%s\n' "$out" | sed -n 2p | grep -q "^pl s$n " && echo "result s$n $id"
  done
}
for k in 12 13 14 15 16 17 18 19; do   # more batches while the worker runs
  ( sleep 0.$k; out=$(llmspool submit --spool spool $(for j in 0 1 2 3 4; do echo $IN/b$k-$j.json; done)) && for id in $out; do echo "ack $id $id"; done ) &
done
waiter 0 & waiter 1 & waiter 2 &
wait
"""


def scenario_worker(index):
    t = Trial(3, index, WORKER_LOOP, "1.0:4.0")
    t.run()
    spool = os.path.join(t.fs, "spool")
    acked = {a[2]: a[1] for a in t.acks}
    results = {l.split()[2]: l.split()[1] for l in t.lines if l.startswith("result ")}
    res = dict(acks=len(acked), results=len(results), lost=0, dups=0, crash=t.crash_at, rc=t.rc)
    fsck_ok(t)
    if not os.path.isdir(os.path.join(spool, "new")):
        res["lost"] = len(acked)
        if acked:
            t.problem("the spool is gone after acknowledgements")
        return t, res
    status = recover_and_status(t, spool)
    if status.get("deadClaims"):
        t.problem(f"status --json counts {status['deadClaims']} dead claims right after recover")
    res["lost"] = check_acked(t, spool, acked)
    found = scan(spool)
    for jid, tag in results.items():
        if [s for s, _ in found.get(jid, [])] != ["done"]:
            res["lost"] += 1
            t.problem(f"the result of {jid} was reported (submit --wait) but after the cut the job is in {found.get(jid)}")
    torn = torn_files(spool)
    if torn:
        t.problem(f"{len(torn)} torn files in new/: {torn[:5]}")
    drain(t, spool)
    res["dups"] = check_drained(t, spool, acked)
    # Leases and markers recover: after the drain no marker is left in cur/, no lease of a dead process.
    leftovers = [n for n in os.listdir(os.path.join(spool, "cur"))]
    if leftovers:
        t.problem(f"cur/ still holds {leftovers[:5]} after the drain")
    llmspool("recover", "--spool", spool, check=False)
    leases = os.listdir(os.path.join(spool, ".leases")) if os.path.isdir(os.path.join(spool, ".leases")) else []
    if leases:
        t.problem(f".leases/ still holds {leases[:5]} after recovery with no worker running")
    return t, res


# ---------------------------------------------------------------- the bridge (Kafka mock outside the cut)

class KafkaMock:
    def __init__(self, topics):
        self.p = subprocess.Popen([ARGS.kafka_mock, "1", *topics], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        self.bootstrap = self.p.stdout.readline().strip()
        if not self.bootstrap:
            raise SystemExit("the Kafka mock cluster printed no bootstrap list")

    def stop(self):
        self.p.stdin.close()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def kcat_keys(bootstrap, topic):
    r = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\n"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=60)
    return [k for k in r.stdout.split("\n") if k]


BRIDGE_PROPS = ["-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"]

BRIDGE_LOOP = r"""
llmspool init a >/dev/null && llmspool init b >/dev/null || exit 1
echo "ready"
IN=$PL_IN
llmspool bridge --spool a --brokers $BROKERS --jobs-in $TOPIC_IN --group pl --dlq '' $PROPS 2>$PL_SCRATCH/bridge-a.err &
llmspool bridge --spool b --brokers $BROKERS --jobs-out $TOPIC_OUT $PROPS 2>$PL_SCRATCH/bridge-b.err &
for n in $(seq 0 149); do
  out=$(llmspool submit --spool b $IN/b$n-0.json $IN/b$n-1.json $IN/b$n-2.json $IN/b$n-3.json $IN/b$n-4.json) || continue
  for id in $out; do echo "ack $id $id"; done
done
wait
"""


def run_bridge_until(spool, args, done, timeout):
    p = subprocess.Popen([os.path.join(ARGS.bin, "llmspool"), "bridge", "--spool", spool, *args, *BRIDGE_PROPS],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, LLMSPOOL_LOG_LEVEL="warning"))
    deadline = time.time() + timeout
    ok = False
    while time.time() < deadline and p.poll() is None:
        if done():
            ok = True
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return ok, err


def scenario_bridge(index):
    tin, tout = f"in{index}", f"out{index}"
    mock = KafkaMock([f"{tin}:3", f"{tout}:3"])
    try:
        return bridge_trial(index, mock, tin, tout)
    finally:
        mock.stop()


def bridge_trial(index, mock, tin, tout):
    t = Trial(4, index, BRIDGE_LOOP, "3.0:6.0",
              env={"BROKERS": mock.bootstrap, "TOPIC_IN": tin, "TOPIC_OUT": tout, "PROPS": " ".join(BRIDGE_PROPS)})
    # Kafka → spool: a producer outside the cut feeds the jobs-in topic all through the trial.
    produced = []
    prod = subprocess.Popen(["kcat", "-P", "-b", mock.bootstrap, "-t", tin, "-K", "\t", "-H", 'contentType="application/json"'],
                            stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stop = threading.Event()

    def feed():
        n = 0
        while not stop.is_set() and n < 4000:
            for _ in range(20):
                key = f"k{index}-{n}"
                # Short: the mock cluster keeps about 5 MiB a partition and silently drops older messages.
                prod.stdin.write(key + "\t" + json.dumps({"jobId": key, "prompt": prompt_for(key, 1500)}) + "\n")
                produced.append(key)
                n += 1
            prod.stdin.flush()
            time.sleep(0.03)
    th = threading.Thread(target=feed)
    th.start()
    try:
        t.run()
    finally:
        stop.set()
        th.join()
        prod.stdin.close()
        prod.wait(timeout=60)
    a, b = os.path.join(t.fs, "a"), os.path.join(t.fs, "b")
    acked = {x[2]: x[1] for x in t.acks}
    res = dict(acks=len(acked), produced=len(produced), lost=0, dups=0, crash=t.crash_at, rc=t.rc)
    fsck_ok(t)
    if not os.path.isdir(os.path.join(b, "new")) or not os.path.isdir(os.path.join(a, "new")):
        res["lost"] = len(acked)
        if acked:
            t.problem("a spool is gone after acknowledgements")
        return t, res
    # spool → Kafka: a job is in forwarded/ only if Kafka has it; every acknowledged job is in new/ or forwarded/.
    recover_and_status(t, b)
    in_kafka = kcat_keys(mock.bootstrap, tout)
    kafka_set = set(in_kafka)
    found_b = scan(b)
    fwd = [j for j, places in found_b.items() if any(s == "forwarded" for s, _ in places)]
    missing = [j for j in fwd if j not in kafka_set]
    if missing:
        res["lost"] += len(missing)
        t.problem(f"{len(missing)} jobs in forwarded/ that Kafka does not have: {missing[:5]}")
    res["lost"] += check_acked(t, b, acked)
    res["forwarded_at_cut"] = len(fwd)
    # Restart the out-bridge until every acknowledged job is in Kafka.
    ok, err = run_bridge_until(b, ["--brokers", mock.bootstrap, "--jobs-out", tout],
                               lambda: not [n for n in os.listdir(os.path.join(b, "new")) if not n.startswith(".")], 60)
    if not ok:
        t.problem(f"the restarted out-bridge did not empty new/: {err[-300:]}")
    in_kafka = kcat_keys(mock.bootstrap, tout)
    kafka_set = set(in_kafka)
    not_sent = [j for j in acked if j not in kafka_set]
    if not_sent:
        res["lost"] += len(not_sent)
        t.problem(f"{len(not_sent)} acknowledged jobs never reached Kafka: {not_sent[:5]}")
    res["resent"] = len(in_kafka) - len(kafka_set)
    # Kafka → spool: after recovery and a restart, every produced message is in the spool exactly once.
    recover_and_status(t, a)
    before = set(scan(a))
    res["in_spool_at_cut"] = len(before)
    torn = torn_files(a)
    if torn:
        t.problem(f"{len(torn)} torn files in a/new/: {torn[:5]}")
    want = set(produced)
    ok, err = run_bridge_until(a, ["--brokers", mock.bootstrap, "--jobs-in", tin, "--group", "pl", "--dlq", ""],
                               lambda: want <= set(scan(a)), 90)
    found_a = scan(a)
    skipped = want - set(found_a)
    if skipped:
        res["lost"] += len(skipped)
        t.problem(f"{len(skipped)} messages never reached the spool after a restart (skipped offsets?): {sorted(skipped)[:5]} {err[-300:]}")
    for j, places in found_a.items():
        if len(places) > 1:
            res["dups"] += len(places) - 1
            t.problem(f"message {j} is in the spool {len(places)} times: {places}")
    extra = [j for j in found_a if j not in want]
    if extra:
        res["dups"] += len(extra)
        t.problem(f"{len(extra)} spool files that no message explains: {extra[:5]}")
    failed = [n for n in os.listdir(os.path.join(a, "failed")) if not n.startswith(".")]
    if failed:
        res["dups"] += len(failed)
        t.problem(f"{len(failed)} dead letters in a/failed/ (a clash = a message enqueued twice): {failed[:5]}")
    for j in found_a:
        st, name = found_a[j][0]
        job = job_of(a, st, name)
        if not isinstance(job, dict) or not expected_prompt_ok(job.get("prompt"), j):
            t.problem(f"a/{st}/{name} is not the whole message")
    return t, res


# ---------------------------------------------------------------- main

SCENARIOS = {
    "1": ("enqueue (submit, single and group commit)", scenario_enqueue),
    "2": ("CGI POST with Idempotency-Key", scenario_cgi),
    "3": ("worker finishing jobs (builtin:echo)", scenario_worker),
    "5": ("submit --volatile", lambda i: scenario_enqueue(i, volatile=True)),
    "4": ("bridge: Kafka -> spool and spool -> Kafka", scenario_bridge),
}


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--harness", required=True)
    ap.add_argument("--lazyfs", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--kafka-mock", required=True)
    ap.add_argument("--trials", type=int, default=10, help="trials per scenario (default 10)")
    ap.add_argument("--bridge-trials", type=int, default=None,
                    help="trials of scenario 4, which takes longest (default: 2/5 of --trials, at least 1)")
    ap.add_argument("--scenarios", default="1,2,3,5,4", help="which, in order (default 1,2,3,5,4)")
    ap.add_argument("--mode", choices=["block", "file"], default="block",
                    help="file: LazyFS mounted directly — loses only unflushed file data, and refuses "
                         "renameat2(RENAME_NOREPLACE), so the link + unlink fallback runs (default block)")
    ap.add_argument("--no-journal", action="store_true",
                    help="make the trials' ext4 without a journal (as on this project's machines), through MKE2FS_CONFIG")
    ap.add_argument("--keep", action="store_true", help="keep every trial's files and image")
    ap.add_argument("--out", default=None, help="where trials run (default: a new folder in /tmp)")
    ap.add_argument("--timing", action="store_true", help="show how long each part of a trial took")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ARGS = ap.parse_args()
    ARGS.out = ARGS.out or tempfile.mkdtemp(prefix="llmspool-powerloss.")
    os.makedirs(ARGS.out, exist_ok=True)
    log(f"powerloss: {ARGS.trials} trials per scenario, in {ARGS.out}")
    ARGS.inputs = prepare_inputs()
    if ARGS.no_journal:
        conf = open(os.environ.get("MKE2FS_CONFIG", "/etc/mke2fs.conf")).read()
        ARGS.no_journal = os.path.join(ARGS.out, "mke2fs.conf")
        with open(ARGS.no_journal, "w") as f:
            f.write(conf.replace("has_journal", "^has_journal"))
    summary, failures = {}, 0
    for sc in ARGS.scenarios.split(","):
        title, fn = SCENARIOS[sc]
        started = time.time()
        agg = dict(trials=0, crashed_while_running=0, acks=0, lost=0, dups=0, fsck_clean=0, crash_points=[])
        trials = ARGS.trials if sc != "4" else ARGS.bridge_trials if ARGS.bridge_trials is not None else max(1, ARGS.trials * 2 // 5)
        for i in range(trials):
            t0 = time.time()
            t, res = fn(i)
            if ARGS.timing:
                res["time"] = f"prep {t.started - t0:.1f}s cut {t.cut_done - t.started:.1f}s check {time.time() - t.cut_done:.1f}s"
            agg["trials"] += 1
            agg["crashed_while_running"] += res["rc"] == 0
            agg["fsck_clean"] += t.fsck == 0
            agg["crash_points"].append(res["crash"])
            for k, v in res.items():
                if k in ("crash", "rc", "status", "time"):
                    continue
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    agg[k] = agg.get(k, 0) + v if k not in ("acks", "lost", "dups") else agg[k] + v
            brief = " ".join(f"{k}={v}" for k, v in res.items() if k != "status")
            if t.problems:
                failures += 1
                log(f"  [{sc}] trial {i}: FAIL {brief}")
                for p in t.problems[:10]:
                    log(f"      - {p}")
                log(f"      (kept in {t.base})")
            elif trials <= 20 or i % 10 == 9:
                log(f"  [{sc}] trial {i}: ok {brief}")
            t.finish()
        if ARGS.mode != "block":
            agg["fsck_clean"] = "n/a (no fsck in file mode)"
        cp = sorted(agg.pop("crash_points"))
        agg["crash_points_s"] = f"{cp[0]:.2f}..{cp[-1]:.2f} (median {cp[len(cp) // 2]:.2f})" if cp else "-"
        agg["seconds"] = round(time.time() - started, 1)
        summary[sc] = agg
        log(f"scenario {sc} ({title}): " + ", ".join(f"{k} {v}" for k, v in agg.items()))
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump(summary, f, indent=1)
    if failures:
        log(f"powerloss: {failures} trials FAILED (their files are kept in {ARGS.out})")
        sys.exit(1)
    log("powerloss: every trial passed: nothing acknowledged was lost or duplicated")
    if not ARGS.keep:
        shutil.rmtree(ARGS.out, ignore_errors=True)


if __name__ == "__main__":
    main()
