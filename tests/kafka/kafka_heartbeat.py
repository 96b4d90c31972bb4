#!/usr/bin/env python3
"""Heartbeats over Kafka with a real broker and real processes.

It starts a single-node Kafka broker (scripts/kafka.sh) on a free loopback port,
`sagad --transport kafka --test-activities` and two saga-workers serving the `test` queue,
then runs one saga whose only step sleeps 8 s with `timeout: 60s` and `heartbeat: 1s`, and
checks:

  topic     sagad created saga.heartbeats at start (with its partitions);
  running   GET /v1/instances/{id} shows the attempt's heartbeats while it runs: the
            worker holding it, the time of the last heartbeat moving on, the handler's
            progress;
  kill      the worker running it is killed with kill -9: the attempt times out with
            saga.heartbeat_timeout long before its 60 s timeout, the other worker runs
            attempt 2, and the saga completes;
  wire      the heartbeats on saga.heartbeats are ActivityHeartbeat messages keyed by the
            instance, from the worker that ran the attempt, none of attempt 2 sent after
            its result;
  stop      SIGTERM stops sagad and the worker left cleanly (exit 0).

The helpers (processes, REST, kcat, protobuf fields) are those of kafka_e2e.py. Every
process it starts is stopped by its pid when it ends; every wait is bounded and on a
condition. Prints "ok: ..."/"FAIL: ..." lines and closes with "N passed, N failed".
"""
import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import kafka_e2e as k  # noqa: E402

WORKFLOW = """\
saga: kafka_heartbeat
version: 1
description: One long step that heartbeats, for tests/kafka/kafka_heartbeat.py.
timeout: 5m
steps:
  - id: long
    activity: test.sleep
    input: '{ms: 8000, heartbeat_every_ms: 300}'
    timeout: 60s
    heartbeat: 1s
    retry: {max_attempts: 3}
    pivot: true
"""
SLEEP_MS = 8000


class World:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.data = os.path.join(tmp, "data")
        self.db = os.path.join(tmp, "sagad.db")
        self.workflows = os.path.join(tmp, "workflows")
        os.makedirs(self.data)
        os.makedirs(self.workflows)
        with open(os.path.join(self.workflows, "kafka_heartbeat.yaml"), "w") as f:
            f.write(WORKFLOW)
        self.broker = None
        self.rest = None
        self.sagad = None
        self.workers = {}

    def bin(self, name):
        return os.path.join(k.REPO, self.args.build, "bin", name)

    def start_sagad(self):
        self.rest = k.free_port_pair()
        self.sagad = k.Proc("sagad", [
            self.bin("sagad"), "--workflows", self.workflows, "--db", self.db, "--data-dir",
            self.data, "--listen", "127.0.0.1:%d" % self.rest, "--transport", "kafka",
            "--brokers", self.broker, "--test-activities", "--log-level", "info"],
            os.path.join(self.tmp, "sagad.log"))
        return k.wait_until(lambda: k.healthy(self.rest) or not self.sagad.alive(), 60) and \
            self.sagad.alive()

    def start_worker(self, name):
        self.workers[name] = k.Proc(name, [
            self.bin("saga-worker"), "--queue", "test", "--brokers", self.broker, "--data-dir",
            self.data, "--inflight", "4", "--worker-id", name],
            os.path.join(self.tmp, name + ".log"))

    def instance(self, iid):
        try:
            st, raw = k.http_call(self.rest, "GET", "/v1/instances/" + iid)
        except OSError:
            return None
        return json.loads(raw) if st == 200 else None

    def attempts(self, iid):
        d = self.instance(iid)
        return d.get("attempts", []) if isinstance(d, dict) else []

    def attempt(self, iid, n):
        for a in self.attempts(iid):
            if a.get("attempt") == n and not a.get("compensation"):
                return a
        return None


def heartbeats_on_topic(broker, iid):
    """The ActivityHeartbeat fields of every message of saga.heartbeats keyed iid."""
    # Values are binary: each is framed by its size (%S) rather than by a delimiter.
    r = subprocess.run(["kcat", "-b", broker, "-C", "-t", "saga.heartbeats", "-o", "beginning",
                        "-e", "-q", "-f", "%k\t%S\t%s\n"], capture_output=True, timeout=60)
    out, data = [], r.stdout
    while data:
        tab = data.find(b"\t")
        tab2 = data.find(b"\t", tab + 1)
        if tab < 0 or tab2 < 0:
            break
        key = data[:tab].decode("utf-8", "replace")
        size = int(data[tab + 1:tab2])
        value = data[tab2 + 1:tab2 + 1 + size]
        data = data[tab2 + 1 + size + 1:]
        if key == iid:
            try:
                out.append(k.proto_fields(value))
            except (ValueError, IndexError):
                out.append({})
    return out


def ms_of(rfc3339):
    """Epoch ms of the gateway's times ("2026-11-26T10:41:43.741Z")."""
    if not rfc3339:
        return None
    t = datetime.datetime.strptime(rfc3339.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
    return int(t.timestamp() * 1000)


def run(w):
    r = subprocess.run(["kcat", "-b", w.broker, "-L", "-t", "saga.heartbeats"],
                       capture_output=True, text=True, timeout=60)
    k.check("topic: sagad created saga.heartbeats at start with 6 partitions",
            'topic "saga.heartbeats" with 6 partitions' in r.stdout, r.stdout[-300:])
    st, raw = k.http_call(w.rest, "POST", "/v1/workflows/kafka_heartbeat/instances", {},
                          {"Idempotency-Key": "hb-1"})
    if not k.check("start: the saga starts", st in (200, 201, 202), raw[:300]):
        return
    iid = json.loads(raw)["id"]

    # running: two different heartbeat times on attempt 1, with the worker and progress
    first = k.wait_until(lambda: (w.attempt(iid, 1) or {}).get("worker"), 30, 0.1)
    a1 = w.attempt(iid, 1) or {}
    holder = a1.get("worker")
    k.check("running: attempt 1 shows the worker holding it (heartbeat_ms, worker)",
            first and holder in w.workers and a1.get("heartbeat_ms"), json.dumps(a1))
    beat0 = a1.get("heartbeat_ms") or 0
    moved = k.wait_until(lambda: ((w.attempt(iid, 1) or {}).get("heartbeat_ms") or 0) > beat0,
                         10, 0.1)
    k.check("running: its last heartbeat time moves on while it runs", moved)
    progress = k.wait_until(lambda: (w.attempt(iid, 1) or {}).get("progress"), 10, 0.1)
    k.check("running: the handler's progress shows ({slept_ms, of})",
            isinstance(progress, dict) and progress.get("of") == SLEEP_MS, json.dumps(progress))
    a1 = w.attempt(iid, 1) or {}
    if not k.check("running: attempt 1 still runs before the kill",
                   a1.get("status") == "running", json.dumps(a1)):
        return

    # kill: the holder dies; the lease ends after heartbeat (1 s), not timeout (60 s)
    killed_at = time.time()
    w.workers[holder].kill9()
    k.log("   killed %s (holding attempt 1) with kill -9" % holder)
    ended = k.wait_until(lambda: (w.attempt(iid, 1) or {}).get("status") != "running", 70, 0.1)
    a1 = w.attempt(iid, 1) or {}
    code = (a1.get("error") or {}).get("code")
    k.check("kill: attempt 1 times out with saga.heartbeat_timeout",
            ended and a1.get("status") == "timeout" and code == "saga.heartbeat_timeout",
            json.dumps(a1))
    fin, deadline = ms_of(a1.get("finished_at")), ms_of(a1.get("deadline_at"))
    k.check("kill: long before its 60 s timeout (%.1f s after the kill)" %
            ((fin or 0) / 1000.0 - killed_at),
            fin is not None and deadline is not None and fin < deadline - 30000,
            json.dumps(a1))
    other = [n for n in w.workers if n != holder][0]
    done = k.wait_until(lambda: (w.instance(iid) or {}).get("status") in k.TERMINAL, 90, 0.2)
    inst = w.instance(iid) or {}
    a2 = w.attempt(iid, 2) or {}
    k.check("kill: the other worker runs attempt 2 and the saga completes",
            done and inst.get("status") == "COMPLETED" and a2.get("status") == "ok" and
            a2.get("worker") == other, "%s / %s" % (inst.get("status"), json.dumps(a2)))

    # wire: what went over saga.heartbeats
    beats = heartbeats_on_topic(w.broker, iid)
    by1 = [b for b in beats if b.get(4, 1) == 1]
    by2 = [b for b in beats if b.get(4, 1) == 2]
    # Attempt 1's message also comes again to the other worker (its offset was never
    # committed), which heartbeats that copy too: sagad counts those as stale.
    mine = [b for b in by1 if b.get(7) == holder]
    k.check("wire: heartbeats of attempt 1 on saga.heartbeats, keyed by the saga, from %s" %
            holder, len(mine) >= 2 and all(b.get(1) == iid and b.get(2) == "long" for b in by1),
            "%d: %s" % (len(mine), by1[:2]))
    # Attempt 2 has the same idempotency key: the other worker may answer it from the
    # record of attempt 1's copy, right after its first heartbeat.
    fin2 = ms_of(a2.get("finished_at"))
    late = [b for b in by2 if fin2 is None or b.get(8, 0) > fin2]
    k.check("wire: heartbeats of attempt 2 from %s, none sent after its result" % other,
            len(by2) >= 1 and all(b.get(7) == other for b in by2) and not late,
            "%d, %d late: %s" % (len(by2), len(late), by2[:2]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"),
                    help="build folder with bin/sagad and bin/saga-worker (default build)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, k.on_signal)
    signal.signal(signal.SIGINT, k.on_signal)
    for tool in ("kcat", "java"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
            k.check("%s is installed (scripts/deps.sh test)" % tool, False)
            return
    tmp = tempfile.mkdtemp(prefix="sg_kafka_hb")
    t0 = time.monotonic()
    try:
        w = World(args, tmp)
        k.broker_dir = os.path.join(tmp, "kafka")
        port = k.free_port_pair()
        r = subprocess.run([k.KAFKA_SH, "start", "--dir", k.broker_dir, "--port", str(port)],
                           capture_output=True, text=True, timeout=300)
        w.broker = r.stdout.strip()
        if not k.check("broker: scripts/kafka.sh start on 127.0.0.1:%d" % port,
                       r.returncode == 0 and w.broker == "127.0.0.1:%d" % port, r.stderr[-500:]):
            return
        if not k.check("sagad --transport kafka starts and answers /healthz", w.start_sagad(),
                       w.sagad.log_text()[-2000:]):
            return
        w.start_worker("hb1")
        w.start_worker("hb2")
        k.check("workers: both join the consumer group saga-worker.test",
                k.wait_until(lambda: all("assigned" in p.log_text() for p in w.workers.values()),
                             60, 0.1))
        run(w)
        for name, pr in list(w.workers.items()):
            if pr.alive():
                rc = pr.term()
                k.check("stop: %s exits 0 on SIGTERM" % name, rc == 0, str(rc))
        rc = w.sagad.term()
        k.check("stop: sagad exits 0 on SIGTERM", rc == 0, str(rc))
        crashes = [p.name for p in k.procs if p.p.returncode not in (0, -signal.SIGKILL)]
        k.check("no process died unexpectedly", not crashes, str(crashes))
    except Exception as e:  # a broken setup is a failure, not a traceback
        k.check("the test ran to its end", False, "%s: %s" % (type(e).__name__, e))
    finally:
        k.cleanup()
        k.log("   (total %.1f s; logs in %s)" % (time.monotonic() - t0, tmp))
        if not args.keep and k.failed == 0:
            subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
    print("%d passed, %d failed" % (k.passed, k.failed))
    sys.exit(1 if k.failed else 0)
