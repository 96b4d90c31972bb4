#!/usr/bin/env python3
"""End-to-end test of the Kafka transport with a real broker and real processes.

It starts a single-node Kafka broker (scripts/kafka.sh) on a free loopback port, then
`sagad --transport kafka --test-activities` and saga-worker processes serving the `test`
queue, all on one data folder, and checks:

  e2e      sagas of tests/kafka/kafka_e2e.yaml complete (or compensate when declined)
           over Kafka, with two workers sharing the queue;
  kill     a worker is killed with kill -9 while tasks are in flight and another one is
           added: every saga still ends as its input says;
  sagad    sagad is killed with kill -9 mid-run and started again: recovery dispatches
           the running attempts again, uncommitted results are read again;
  broker   the broker is killed (SIGKILL) mid-run and started again on its data;
  replay   a worker in a new consumer group replays saga.tasks.test from offset 0: the
           handlers answer from their records, sagad ignores the duplicate results, and
           no effect happens a second time;
  poison   a message that is no ActivityTask goes to saga.tasks.test.dlq and the task
           after it on the same partition still runs; sagad records the dead letter
           (GET /v1/dlq) and an operator discards it;
  crash    a task that is started again and again and never finishes (the worker is
           killed while it runs) goes to the DLQ after --max-deliveries starts, counted in
           saga-worker.db across the kills, and the partition goes on;
  requeue  a real saga's task dead-lettered after --max-deliveries 1 (its worker killed
           while it ran) shows up in GET /v1/dlq; POST /v1/dlq/{id}/requeue puts it back,
           a worker runs it (its start count begins again) and the saga completes;
  events   the saga's own order.completed events reach the Kafka topic of that name
           (sagad's outbox), keyed by saga, as OrderCompleted messages from "sagad";
           order.created, which fits no message, stays in the log with one warning;
  stop     SIGTERM stops sagad and the workers cleanly (exit 0);
  effects  after all that, no effect is lost or applied twice (test-effects.db: each
           step's effect once, compensations only for declined sagas, in reverse order;
           sagad: one successful attempt per step, none timed out).

Every process it starts is stopped by its pid when it ends (also on failure or a
signal); everything listens on 127.0.0.1 only; every wait is bounded and on a condition.
Prints "ok: ..."/"FAIL: ..." lines and closes with "N passed, N failed"; exit 1 on any
failure. Python 3 standard library only (plus kcat and sqlite files).
"""
import argparse
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KAFKA_SH = os.path.join(REPO, "scripts", "kafka.sh")
WORKFLOW = "kafka_e2e"
FORWARD = ["reserve", "hold", "charge", "approve", "notify"]
TERMINAL = {"COMPLETED", "COMPENSATED", "FAILED", "COMPENSATION_FAILED"}

passed = 0
failed = 0
procs = []  # every child we started, stopped by pid at exit
broker_dir = None


def log(msg):
    print(msg, flush=True)


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        log("ok: " + name)
    else:
        failed += 1
        log("FAIL: " + name + (": " + detail if detail else ""))
    return ok


def wait_until(pred, timeout, step=0.05):
    """Polls pred until it is true or timeout seconds passed; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step)


# ---- processes ---------------------------------------------------------------------------

class Proc:
    def __init__(self, name, cmd, log_path):
        self.name = name
        self.log_path = log_path
        with open(log_path, "a") as f:
            f.write("=== kafka_e2e: start %s at %.3f\n" % (name, time.time()))
            f.flush()
            self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                      cwd=REPO)
        procs.append(self)

    def alive(self):
        return self.p.poll() is None

    def kill9(self):
        if self.alive():
            os.kill(self.p.pid, signal.SIGKILL)
        self.p.wait(timeout=30)

    def term(self, grace=70):
        """SIGTERM, SIGKILL after grace seconds; returns the exit code."""
        if self.alive():
            os.kill(self.p.pid, signal.SIGTERM)
            try:
                return self.p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=30)
                return "killed after %d s" % grace
        return self.p.returncode

    def log_text(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""


def cleanup():
    for pr in procs:
        try:
            if pr.alive():
                os.kill(pr.p.pid, signal.SIGKILL)
                pr.p.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
    if broker_dir is not None:
        subprocess.run([KAFKA_SH, "stop", "--dir", broker_dir], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def on_signal(signum, frame):
    cleanup()
    sys.exit(130)


def accepts(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port_pair():
    """A port (and port+1 for the controller) nothing listens on yet."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p < 65000 and not accepts(p) and not accepts(p + 1):
            return p
    raise RuntimeError("no free port pair")


# ---- REST and databases -----------------------------------------------------------------

def http_call(port, method, path, body=None, headers=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers=dict({"Content-Type": "application/json"}, **(headers or {})))
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def healthy(port):
    try:
        return http_call(port, "GET", "/healthz", timeout=2)[0] == 200
    except (OSError, http.client.HTTPException):
        return False


def ro(path):
    return sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)


def query(path, sql, args=()):
    if not os.path.exists(path):
        return []
    try:
        con = ro(path)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []


# ---- Kafka by hand: kcat and a tiny protobuf encoder for ActivityTask -------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def activity_task(instance, step_id, activity, input_json, attempt=1, deadline_ms=0):
    """schemas/saga.proto ActivityTask, field by field."""
    def s(field, text):
        b = text.encode()
        return varint(field << 3 | 2) + varint(len(b)) + b

    def u(field, n):
        return varint(field << 3) + varint(n)

    key = "%s/%s" % (instance, step_id)
    msg = s(1, instance) + s(2, step_id) + u(3, 0) + u(4, attempt) + s(6, key) + s(7, activity)
    msg += s(8, input_json)
    if deadline_ms:
        msg += u(9, deadline_ms)
    return msg + s(10, instance)


def topic_count(broker, topic):
    r = subprocess.run(["kcat", "-b", broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                        "-f", "x\n"], capture_output=True, timeout=120)
    return r.stdout.count(b"\n") if r.returncode == 0 else -1


def kcat_produce(broker, topic, partition, key, value, tmp):
    path = os.path.join(tmp, "msg.bin")
    with open(path, "wb") as f:
        f.write(value)
    r = subprocess.run(["kcat", "-b", broker, "-P", "-t", topic, "-p", str(partition), "-k", key,
                        "-X", "acks=all", path], capture_output=True, timeout=60)
    return r.returncode == 0


def dlq_entries(broker):
    """(key, headers dict) of every message of saga.tasks.test.dlq."""
    r = subprocess.run(["kcat", "-b", broker, "-C", "-t", "saga.tasks.test.dlq", "-o",
                        "beginning", "-e", "-q", "-f", "%k\t%h\n"], capture_output=True,
                       timeout=60, text=True, errors="replace")
    out = []
    for line in r.stdout.splitlines():
        if "\t" not in line:
            continue
        key, hdrs = line.split("\t", 1)
        h = {}
        for kv in hdrs.split(","):
            if "=" in kv:
                k, v = kv.split("=", 1)
                h[k] = v
        out.append((key, h))
    return out


def topic_keys(broker, topic):
    """The keys of every message of topic (empty when it does not exist yet)."""
    r = subprocess.run(["kcat", "-b", broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                        "-f", "%k\n"], capture_output=True, timeout=60, text=True,
                       errors="replace")
    return [k for k in r.stdout.splitlines() if k] if r.returncode == 0 else []


def proto_fields(data):
    """The scalar fields of a protobuf message: {number: str | int} (last one wins)."""
    out, i = {}, 0

    def varint_at(i):
        n, shift = 0, 0
        while True:
            b = data[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n, i
    while i < len(data):
        key, i = varint_at(i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            out[field], i = varint_at(i)
        elif wire == 2:
            n, i = varint_at(i)
            out[field] = data[i:i + n].decode("utf-8", "replace")
            i += n
        else:
            raise ValueError("wire type %d" % wire)
    return out


def rest_json(w, method, path):
    st, raw = http_call(w.rest, method, path, body=None if method == "GET" else {})
    try:
        return st, json.loads(raw)
    except ValueError:
        return st, raw


def dlq_rows(w, query=""):
    st, d = rest_json(w, "GET", "/v1/dlq" + query)
    return d["items"] if st == 200 else []


# ---- the test ----------------------------------------------------------------------------

class World:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.data = os.path.join(tmp, "data")
        self.db = os.path.join(tmp, "sagad.db")
        self.effects = os.path.join(self.data, "test-effects.db")
        self.deliveries = os.path.join(self.data, "saga-worker.db")
        self.workflows = os.path.join(tmp, "workflows")
        os.makedirs(self.data)
        os.makedirs(self.workflows)
        with open(os.path.join(HERE, "kafka_e2e.yaml")) as src, \
                open(os.path.join(self.workflows, "kafka_e2e.yaml"), "w") as dst:
            dst.write(src.read())
        self.rest = None
        self.broker = None
        self.broker_port = None
        self.sagad = None
        self.workers = {}
        self.n_workers = 0
        self.expected = {}  # instance id -> "COMPLETED" / "COMPENSATED"

    def bin(self, name):
        return os.path.join(REPO, self.args.build, "bin", name)

    def start_sagad(self):
        self.rest = free_port_pair()
        self.sagad = Proc("sagad", [
            self.bin("sagad"), "--workflows", self.workflows, "--db", self.db, "--data-dir",
            self.data, "--listen", "127.0.0.1:%d" % self.rest, "--transport", "kafka",
            "--brokers", self.broker, "--test-activities", "--log-level", "info"],
            os.path.join(self.tmp, "sagad.log"))
        return wait_until(lambda: healthy(self.rest) or not self.sagad.alive(), 60) and \
            self.sagad.alive()

    def start_worker(self, *extra):
        self.n_workers += 1
        name = "w%d" % self.n_workers
        self.workers[name] = Proc(name, [
            self.bin("saga-worker"), "--queue", "test", "--brokers", self.broker, "--data-dir",
            self.data, "--inflight", "4", "--worker-id", name] + list(extra),
            os.path.join(self.tmp, name + ".log"))
        return name

    def assigned(self, name):
        return "assigned" in self.workers[name].log_text()

    def submit(self, n, decline, sleep_ms):
        body = {"n": n, "decline": decline, "sleep_ms": sleep_ms}
        for _ in range(50):
            try:
                st, raw = http_call(self.rest, "POST", "/v1/workflows/%s/instances" % WORKFLOW,
                                    body, {"Idempotency-Key": "n-%d" % n})
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
                continue
            if st in (200, 201, 202):
                iid = json.loads(raw)["id"]
                self.expected[iid] = "COMPENSATED" if decline else "COMPLETED"
                return iid
            raise RuntimeError("start %d: HTTP %d %s" % (n, st, raw[:200]))
        raise RuntimeError("start %d: sagad does not answer" % n)

    def submit_many(self, ns, sleep_ms):
        ids = []
        lock = threading.Lock()

        def one(chunk):
            for n in chunk:
                iid = self.submit(n, n % 5 == 4, sleep_ms)
                with lock:
                    ids.append(iid)
        chunks = [ns[i::4] for i in range(4)]
        ts = [threading.Thread(target=one, args=(c,)) for c in chunks]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return ids

    def statuses(self, ids):
        rows = query(self.db, "SELECT id, status FROM instances")
        got = dict(rows)
        return {i: got.get(i) for i in ids}

    def all_terminal(self, ids):
        st = self.statuses(ids)
        return all(v in TERMINAL for v in st.values())


def phase_e2e(w):
    ids = w.submit_many(list(range(0, 30)), 20)
    done = wait_until(lambda: w.all_terminal(ids), 120, 0.1)
    st = w.statuses(ids)
    wrong = [(i, s, w.expected[i]) for i, s in st.items() if s != w.expected[i]]
    check("e2e: 30 sagas over Kafka end as their input says (24 completed, 6 compensated)",
          done and not wrong, "%d wrong, e.g. %s" % (len(wrong), wrong[:3]))


def phase_kill(w):
    ids = w.submit_many(list(range(100, 160)), 300)
    # Wait until work is under way (some steps done, many sagas still running), then kill.
    under_way = wait_until(lambda: len(query(w.effects, "SELECT 1 FROM effects WHERE "
                                             "instance_id IN (%s)" % ",".join("?" * len(ids)),
                                             ids)) >= 20, 60, 0.02)
    check("kill: work is under way before the kill", under_way)
    victim = "w1"
    running_before = sum(1 for s in w.statuses(ids).values() if s not in TERMINAL)
    w.workers[victim].kill9()
    log("   killed %s with kill -9 (%d of 60 sagas still running)" % (victim, running_before))
    check("kill: sagas were still running when the worker died", running_before > 0)
    w.start_worker()
    done = wait_until(lambda: w.all_terminal(ids), 180, 0.1)
    st = w.statuses(ids)
    wrong = [(i, s, w.expected[i]) for i, s in st.items() if s != w.expected[i]]
    check("kill: all 60 sagas end as their input says after kill -9 of a worker",
          done and not wrong, "%d wrong, e.g. %s" % (len(wrong), wrong[:3]))
    redelivered = query(w.effects, "SELECT key, attempt, COUNT(*) FROM deliveries "
                        "GROUP BY key, attempt HAVING COUNT(*) > 1")
    log("   %d tasks (same key and attempt) were delivered more than once, answered from "
        "the journal" % len(redelivered))


def run_until_done(w, ns, what, disrupt, timeout=240):
    """Submits sagas ns, calls disrupt() once work is under way, waits for the end."""
    ids = w.submit_many(ns, 300)
    under_way = wait_until(lambda: len(query(w.effects, "SELECT 1 FROM effects WHERE "
                                             "instance_id IN (%s)" % ",".join("?" * len(ids)),
                                             ids)) >= 15, 60, 0.02)
    check("%s: work is under way before the disruption" % what, under_way)
    disrupt()
    done = wait_until(lambda: w.all_terminal(ids), timeout, 0.1)
    st = w.statuses(ids)
    wrong = [(i, s, w.expected[i]) for i, s in st.items() if s != w.expected[i]]
    check("%s: all %d sagas end as their input says" % (what, len(ids)), done and not wrong,
          "%d wrong, e.g. %s" % (len(wrong), wrong[:3]))


def phase_sagad_kill(w):
    def disrupt():
        w.sagad.kill9()
        log("   killed sagad with kill -9")
        check("sagad: restarts on the same database after kill -9", w.start_sagad(),
              w.sagad.log_text()[-2000:])
    run_until_done(w, list(range(200, 240)), "sagad", disrupt)


def phase_broker_crash(w):
    def disrupt():
        r = subprocess.run([KAFKA_SH, "crash", "--dir", broker_dir], capture_output=True,
                           text=True, timeout=120)
        check("broker: crashed (SIGKILL)", r.returncode == 0, r.stderr[-500:])
        r = subprocess.run([KAFKA_SH, "start", "--dir", broker_dir, "--port",
                            str(w.broker_port)], capture_output=True, text=True, timeout=300)
        check("broker: restarted on its data", r.returncode == 0 and
              r.stdout.strip() == w.broker, r.stderr[-500:])
    run_until_done(w, list(range(300, 340)), "broker", disrupt)
    alive = [p.name for p in procs if p.p.returncode is None and not p.alive()]
    check("broker: sagad and the workers lived through the outage",
          w.sagad.alive() and all(p.alive() for n, p in w.workers.items() if n != "w1"), alive)
    recreated = sum(p.log_text().count("kafka producer: recreated") for p in procs)
    log("   (producers recreated after a fatal error: %d)" % recreated)


def phase_replay(w):
    tasks = topic_count(w.broker, "saga.tasks.test")
    results = topic_count(w.broker, "saga.results")
    effects = query(w.effects, "SELECT key, outcome, seq FROM effects ORDER BY seq")
    st = w.statuses(list(w.expected))
    name = w.start_worker("--group", "replay", "--inflight", "16")
    got = tasks > 0 and results > 0 and wait_until(
        lambda: topic_count(w.broker, "saga.results") >= results + tasks, 180, 0.5)
    check("replay: a new group answered all %d tasks of saga.tasks.test again" % tasks, got)
    rc = w.workers[name].term()
    check("replay: its worker stops on SIGTERM with exit 0", rc == 0, str(rc))
    after = query(w.effects, "SELECT key, outcome, seq FROM effects ORDER BY seq")
    check("replay: no effect happened a second time (test-effects.db unchanged)",
          after == effects and len(effects) > 0,
          "%d effects before, %d after" % (len(effects), len(after)))
    check("replay: every saga kept its status (duplicate results ignored)",
          w.statuses(list(w.expected)) == st)


def phase_poison(w, tmp):
    ok = kcat_produce(w.broker, "saga.tasks.test", 0, "poison-0",
                      b"\xff\xff\xff\xff\x0fthis is not an ActivityTask", tmp)
    ok = ok and kcat_produce(w.broker, "saga.tasks.test", 0, "AFTERPOISON0",
                             activity_task("AFTERPOISON0", "s", "test.echo", '{"after":"poison"}'),
                             tmp)
    check("poison: produced a poison message and a task after it on partition 0", ok)
    ran = wait_until(lambda: query(w.effects, "SELECT outcome FROM effects WHERE key = ?",
                                   ("AFTERPOISON0/s",)), 60)
    check("poison: the task after the poison message ran", ran == [("ok",)], str(ran))
    dl = wait_until(lambda: [e for e in dlq_entries(w.broker) if e[0] == "poison-0"], 60, 0.2)
    check("poison: the poison message is in saga.tasks.test.dlq with its reason",
          len(dl) == 1 and "ActivityTask" in dl[0][1].get("sagad.dlq.reason", "") and
          dl[0][1].get("sagad.dlq.topic") == "saga.tasks.test" and
          dl[0][1].get("sagad.dlq.partition") == "0", str(dl))
    rows = wait_until(lambda: [r for r in dlq_rows(w, "?queue=test&status=new")
                               if r["key"] == "poison-0"], 60, 0.2)
    check("poison: sagad recorded the dead letter (GET /v1/dlq)",
          len(rows) == 1 and "ActivityTask" in (rows[0]["reason"] or "") and
          rows[0]["instance_id"] is None and rows[0]["topic"] == "saga.tasks.test.dlq" and
          rows[0]["headers"].get("sagad.dlq.partition") == "0", str(rows))
    if rows:
        st, d = rest_json(w, "POST", "/v1/dlq/%d/discard" % rows[0]["id"])
        check("poison: discard answers 200, status discarded",
              st == 200 and d.get("status") == "discarded", "%s %s" % (st, d))
        st, d = rest_json(w, "POST", "/v1/dlq/%d/discard" % rows[0]["id"])
        check("poison: a second discard is a 409", st == 409 and
              d.get("dlq_status") == "discarded", "%s %s" % (st, d))
        check("poison: listed as discarded",
              [r["id"] for r in dlq_rows(w, "?status=discarded")] == [rows[0]["id"]])


def phase_crash(w, tmp):
    # One worker only, so we know who runs the crashing task.
    for name, pr in list(w.workers.items()):
        if pr.alive():
            rc = pr.term()
            check("crash: %s stops on SIGTERM with exit 0" % name, rc == 0, str(rc))
    key = ("saga.tasks.test", 1)
    task = activity_task("CRASH1", "s", "test.sleep", '{"ms":60000}')
    check("crash: produced a task that never finishes on partition 1",
          kcat_produce(w.broker, key[0], key[1], "CRASH1", task, tmp))

    def starts():
        r = query(w.deliveries, "SELECT starts FROM deliveries WHERE topic = ? AND part = ?",
                  key)
        return r[0][0] if r else 0

    max_deliveries = 2
    for attempt in range(1, max_deliveries + 1):
        name = w.start_worker("--max-deliveries", str(max_deliveries))
        got = wait_until(lambda: starts() >= attempt, 90, 0.05)
        check("crash: start %d of the task is counted in saga-worker.db" % attempt,
              got and starts() == attempt, "starts = %s" % starts())
        w.workers[name].kill9()
    name = w.start_worker("--max-deliveries", str(max_deliveries))
    dl = wait_until(lambda: [e for e in dlq_entries(w.broker) if e[0] == "CRASH1"], 90, 0.2)
    check("crash: after %d starts the task is in the DLQ, not started again" % max_deliveries,
          len(dl) == 1 and dl[0][1].get("sagad.dlq.starts") == str(max_deliveries) and
          "without finishing" in dl[0][1].get("sagad.dlq.reason", ""), str(dl))
    check("crash: its delivery count is forgotten once it is dead-lettered",
          wait_until(lambda: starts() == 0, 30))
    ok = kcat_produce(w.broker, key[0], key[1], "AFTERCRASH1",
                      activity_task("AFTERCRASH1", "s", "test.echo", '{"after":"crash"}'), tmp)
    ran = ok and wait_until(lambda: query(w.effects, "SELECT outcome FROM effects WHERE key = ?",
                                          ("AFTERCRASH1/s",)), 60)
    check("crash: the partition goes on: the next task ran", ran == [("ok",)], str(ran))
    never = query(w.effects, "SELECT COUNT(*) FROM effects WHERE key = ?", ("CRASH1/s",))
    check("crash: the crashing task never had an effect", never == [(0,)], str(never))
    return name


def phase_requeue(w):
    """A saga's task dead-lettered (its worker killed while it ran, --max-deliveries 1),
    then requeued by an operator: the task runs and the saga completes."""
    for name, pr in list(w.workers.items()):
        if pr.alive():
            rc = pr.term()
            check("requeue: %s stops on SIGTERM with exit 0" % name, rc == 0, str(rc))
    a = w.start_worker("--max-deliveries", "1")
    check("requeue: a worker with --max-deliveries 1 joins",
          wait_until(lambda: w.assigned(a), 60, 0.1))
    iid = w.submit(900, False, 4000)

    def hold_started():
        # The hold task runs in the worker: sagad's attempt is running and the worker
        # counted a start after it was dispatched (the reserve task's row is older).
        att = query(w.db, "SELECT started_ms FROM step_attempts WHERE instance_id = ? AND "
                    "step = 1 AND compensation = 0 AND status = 'running'", (iid,))
        return att and query(w.deliveries, "SELECT 1 FROM deliveries WHERE topic = "
                             "'saga.tasks.test' AND starts = 1 AND first_ms >= ?", (att[0][0],))
    check("requeue: the saga's hold task started", wait_until(hold_started, 60, 0.02))
    w.workers[a].kill9()
    b = w.start_worker("--max-deliveries", "1")
    rows = wait_until(lambda: [r for r in dlq_rows(w, "?queue=test&status=new")
                               if r["instance_id"] == iid], 90, 0.2)
    check("requeue: the dead-lettered task is in GET /v1/dlq with its saga, step and attempt",
          len(rows) == 1 and rows[0]["step_id"] == "hold" and rows[0]["attempt"] == 1 and
          rows[0]["idempotency_key"] == iid + "/hold" and
          "without finishing" in (rows[0]["reason"] or "") and rows[0]["input"] == {"ms": 4000},
          str(rows))
    if not rows:
        return
    st, d = rest_json(w, "POST", "/v1/dlq/%d/requeue" % rows[0]["id"])
    check("requeue: POST /v1/dlq/{id}/requeue answers 202, status requeued",
          st == 202 and d.get("status") == "requeued", "%s %s" % (st, d))
    done = wait_until(lambda: w.statuses([iid])[iid] in TERMINAL, 60, 0.1)
    w.expected[iid] = "COMPLETED"
    check("requeue: the requeued task ran and the saga completed",
          done and w.statuses([iid])[iid] == "COMPLETED", str(w.statuses([iid])))
    st, d = rest_json(w, "POST", "/v1/dlq/%d/requeue" % rows[0]["id"])
    check("requeue: a second requeue is a 409", st == 409, "%s %s" % (st, d))
    r = subprocess.run([w.bin("sagactl"), "--server", "http://127.0.0.1:%d" % w.rest, "dlq",
                        "list", "--queue", "test", "--status", "requeued"],
                       capture_output=True, text=True, timeout=30)
    check("requeue: sagactl dlq list shows it", r.returncode == 0 and iid in r.stdout and
          "hold" in r.stdout, r.stdout + r.stderr)
    return b


def phase_events(w):
    """The sagas' own order.completed events are on Kafka; order.created stays in the log."""
    done = [r[0] for r in query(w.db, "SELECT id FROM instances WHERE workflow = ? AND "
                                "status = 'COMPLETED'", (WORKFLOW,))]

    def published():
        keys = topic_keys(w.broker, "order.completed")
        return keys if set(done) <= set(keys) else None
    keys = wait_until(published, 60, 0.5) or topic_keys(w.broker, "order.completed")
    check("events: every completed saga's order.completed is on its Kafka topic (%d sagas)"
          % len(done), done and set(done) <= set(keys),
          "%d of %d missing" % (len(set(done) - set(keys)), len(done)))
    check("events: nothing else is on it (duplicates allowed: consumers dedupe on event_id)",
          set(keys) <= set(done), str(sorted(set(keys) - set(done))[:3]))
    r = subprocess.run(["kcat", "-b", w.broker, "-C", "-t", "order.completed", "-o", "beginning",
                        "-c", "1", "-e", "-q", "-D", "", "-f", "%s"], capture_output=True,
                       timeout=60)
    f = proto_fields(r.stdout) if r.returncode == 0 and r.stdout else {}
    check("events: an OrderCompleted message with the envelope of the services' events",
          f.get(2) == "order.completed" and f.get(5) == "sagad" and f.get(4) in done and
          f.get(16) == f.get(4) and str(f.get(10, "")).startswith("n-") and len(f.get(1, "")) == 26,
          str(f))
    logged = [e for e in rest_json(w, "GET", "/v1/events?type=order.created&limit=1000")[1]
              .get("items", []) if e["source"] == "sagad"]
    check("events: order.created (no message fits its data) is in the event log",
          len(logged) >= len(done), "%d logged" % len(logged))
    warned = [seg.count("event order.created is kept in the event log but not published")
              for seg in w.sagad.log_text().split("=== kafka_e2e: start sagad")[1:]]
    check("events: ... and sagad warned about it once per process", warned and
          max(warned) <= 1 and sum(warned) >= 1, str(warned))
    st, raw = http_call(w.rest, "GET", "/metrics")
    text = raw.decode()
    series = dict(line.rsplit(" ", 1) for line in text.splitlines()
                  if line and not line.startswith("#"))
    check("metrics: the transport's series are in /metrics",
          st == 200 and float(series.get("sagad_kafka_dead_letters_total", -1)) >= 2 and
          float(series.get("sagad_outbox_published_total", -1)) > 0 and
          "sagad_kafka_results_undecodable_total" in series and
          "sagad_kafka_producer_recreated_total" in series and
          "sagad_kafka_tasks_awaiting_delivery" in series,
          str({k: v for k, v in series.items() if "kafka" in k or "outbox" in k}))


def check_effects(w):
    """Every saga's effects, from test-effects.db and sagad.db (both read-only)."""
    ids = list(w.expected)
    eff = {}
    for key, iid, comp, outcome, seq in query(
            w.effects, "SELECT key, instance_id, compensation, outcome, seq FROM effects"):
        eff[key] = (outcome, seq)
    problems = []
    for iid in ids:
        declined = w.expected[iid] == "COMPENSATED"
        want = {"%s/reserve" % iid: "ok", "%s/hold" % iid: "ok"}
        if declined:
            want["%s/charge" % iid] = "fatal"
            want["%s/hold/compensate" % iid] = "ok"
            want["%s/reserve/compensate" % iid] = "ok"
        else:
            for s in ("charge", "approve", "notify"):
                want["%s/%s" % (iid, s)] = "ok"
        have = {k: v[0] for k, v in eff.items() if k.startswith(iid + "/")}
        if have != want:
            problems.append("%s: effects %s, want %s" % (iid, sorted(have.items()),
                                                         sorted(want.items())))
        elif declined and not (eff["%s/hold/compensate" % iid][1] <
                               eff["%s/reserve/compensate" % iid][1]):
            problems.append("%s: compensations not in reverse order" % iid)
    check("effects: every step's effect exactly once, compensations exactly for the declined "
          "sagas, latest first (%d sagas)" % len(ids), not problems,
          "%d problems, e.g. %s" % (len(problems), problems[:3]))
    # sagad applied at most one successful attempt per step (duplicates were ignored).
    dup = query(w.db, "SELECT instance_id, step, compensation, COUNT(*) FROM step_attempts "
                "WHERE status = 'ok' GROUP BY instance_id, step, compensation HAVING COUNT(*) > 1")
    check("sagad: one successful attempt per step, duplicate results ignored", not dup, str(dup[:3]))
    running = query(w.db, "SELECT COUNT(*) FROM step_attempts WHERE status = 'running'")
    check("sagad: no attempt left running", running == [(0,)], str(running))
    # Kafka redelivered what the killed worker had taken; nothing waited for a timeout.
    timeouts = query(w.db, "SELECT COUNT(*) FROM step_attempts WHERE status = 'timeout'")
    check("sagad: no attempt timed out (no result was lost)", timeouts == [(0,)], str(timeouts))


def main():
    global broker_dir
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"),
                    help="build folder with bin/sagad and bin/saga-worker (default build)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for tool in ("kcat", "java"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
            check("%s is installed (scripts/deps.sh test)" % tool, False)
            return 1
    tmp = tempfile.mkdtemp(prefix="sg_kafka_e2e")
    t0 = time.monotonic()
    try:
        w = World(args, tmp)
        broker_dir = os.path.join(tmp, "kafka")
        port = free_port_pair()
        w.broker_port = port
        r = subprocess.run([KAFKA_SH, "start", "--dir", broker_dir, "--port", str(port)],
                           capture_output=True, text=True, timeout=300)
        w.broker = r.stdout.strip()
        if not check("broker: scripts/kafka.sh start on 127.0.0.1:%d" % port,
                     r.returncode == 0 and w.broker == "127.0.0.1:%d" % port, r.stderr[-500:]):
            return 1
        log("   (broker up after %.1f s)" % (time.monotonic() - t0))
        if not check("sagad --transport kafka starts and answers /healthz", w.start_sagad(),
                     w.sagad.log_text()[-2000:]):
            return 1
        w.start_worker()
        w.start_worker()
        check("workers: both join the consumer group saga-worker.test",
              wait_until(lambda: w.assigned("w1") and w.assigned("w2"), 60, 0.1))
        t = time.monotonic()
        phase_e2e(w)
        log("   (e2e: %.1f s)" % (time.monotonic() - t))
        t = time.monotonic()
        phase_kill(w)
        log("   (kill: %.1f s)" % (time.monotonic() - t))
        for name, phase in (("sagad", phase_sagad_kill), ("broker", phase_broker_crash),
                            ("replay", phase_replay)):
            t = time.monotonic()
            phase(w)
            log("   (%s: %.1f s)" % (name, time.monotonic() - t))
        t = time.monotonic()
        phase_poison(w, tmp)
        log("   (poison: %.1f s)" % (time.monotonic() - t))
        t = time.monotonic()
        phase_crash(w, tmp)
        log("   (crash: %.1f s)" % (time.monotonic() - t))
        t = time.monotonic()
        phase_requeue(w)
        log("   (requeue: %.1f s)" % (time.monotonic() - t))
        t = time.monotonic()
        phase_events(w)
        log("   (events: %.1f s)" % (time.monotonic() - t))
        for name, pr in list(w.workers.items()):
            if pr.alive():
                rc = pr.term()
                check("stop: %s exits 0 on SIGTERM" % name, rc == 0, str(rc))
        rc = w.sagad.term()
        check("stop: sagad exits 0 on SIGTERM", rc == 0, str(rc))
        check_effects(w)
        crashes = [p.name for p in procs if p.p.returncode not in (0, -signal.SIGKILL)]
        check("no process died unexpectedly", not crashes, str(crashes))
    except Exception as e:  # a broken setup is a failure, not a traceback
        check("the test ran to its end", False, "%s: %s" % (type(e).__name__, e))
    finally:
        cleanup()
        log("   (total %.1f s; logs in %s)" % (time.monotonic() - t0, tmp))
        if not args.keep and failed == 0:
            subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    main()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
