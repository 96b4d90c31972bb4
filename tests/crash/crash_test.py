#!/usr/bin/env python3
"""Crash test of sagad: proves that kill -9 never loses or duplicates work.

It starts sagad on a fresh database, submits many sagas of tests/crash/crash.yaml over
REST from several client threads (one Idempotency-Key per saga, the same key again after
every connection error), kills sagad with SIGKILL at random moments (the first boot,
startups, while submitting, after the last submission) and restarts it on the same files,
with a few graceful SIGTERM restarts in between, waits until every saga is finished,
stops sagad and then reads both SQLite files (sagad's and the test activities'
test-effects.db, read-only) to check that:

  - every saga started once (one instance per key) and ended in exactly one terminal
    state, the one its input asks for (fail_at -> COMPENSATED, else COMPLETED);
  - each history is a legal path (contiguous seq, saga_started first, legal status
    changes, steps completed in order, compensations in reverse order of completion);
  - each forward effect happened at most once and only for steps the saga reached, and
    each compensation exactly once when its forward effect happened, in reverse order;
  - no attempt timed out although its call had returned long before (a lost result);
  - each domain event was published once; PRAGMA integrity_check is ok on both files.

It prints its seed first (rerun with --seed N: same inputs and kill delays; thread timing
still differs), one line per check, and closes with "N passed, N failed". Exit status: 0
when every check passed, 1 otherwise. Python 3 standard library only.
"""
import argparse
import bisect
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

_children = []  # every sagad started, for the watchdog
HERE = os.path.dirname(os.path.abspath(__file__))
WORKFLOW = "crash"
# Step ids in document order: the history's `step` column is the index in this list.
STEPS = ["reserve", "hold", "check", "slow", "approve", "notify"]
COMPENSABLE = {"reserve", "hold", "check", "slow"}  # steps with a `compensate` in crash.yaml
FAIL_STEP = {"check": "check", "pivot": "approve", "slow": "slow"}
CONDITIONAL = {"slow"}  # runs only when fail_at is "slow", otherwise skipped
DESIGNED_TIMEOUT = "slow"  # the step whose attempt outlives its timeout by design
TERMINAL = {"COMPLETED", "COMPENSATED", "FAILED", "COMPENSATION_FAILED"}
LEGAL = {("RUNNING", "COMPENSATING"), ("RUNNING", "COMPLETED"), ("RUNNING", "FAILED"),
         ("COMPENSATING", "COMPENSATED"), ("COMPENSATING", "COMPENSATION_FAILED")}
AFTER_END = {"stale_result_ignored", "stale_timer_ignored"}  # allowed after the terminal change
HEALTH_TIMEOUT = 30.0  # a restart must answer /healthz within this
STOP_GRACE = 20.0  # SIGTERM, then SIGKILL after this
MAX_EXAMPLES = 8  # offenders shown per failed check
LOST_MARGIN_MS = 3000  # every call returns well within this (sleeps are <= 400 ms)


def log(msg):
    print(msg, flush=True)


# ---- sagad as a child process -----------------------------------------------------------

class Sagad:
    """One sagad at a time, on fixed files and port; start/kill/stop by its pid."""

    def __init__(self, args, tmp, port):
        self.args = args
        self.port = port
        self.db = os.path.join(tmp, "sagad.db")
        self.data = os.path.join(tmp, "data")
        self.workflows = os.path.join(tmp, "workflows")
        self.log_path = os.path.join(tmp, "sagad.log")
        self.proc = None
        self.starts = 0
        self.unexpected_exits = []  # exit codes of deaths we did not cause
        os.makedirs(self.data, exist_ok=True)
        os.makedirs(self.workflows, exist_ok=True)
        shutil.copy(os.path.join(HERE, "crash.yaml"), os.path.join(self.workflows, "crash.yaml"))

    def spawn(self):
        self.starts += 1
        with open(self.log_path, "a") as f:
            f.write("=== crash_test: start #%d at %.3f\n" % (self.starts, time.time()))
            f.flush()
            cmd = [self.args.sagad, "--workflows", self.workflows, "--db", self.db,
                   "--data-dir", self.data, "--listen", "127.0.0.1:%d" % self.port,
                   "--test-activities", "--sync", "full", "--threads", str(self.args.threads),
                   "--log-level", "warn"]
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=f)
            _children.append(self.proc)

    def wait_healthy(self, timeout=HEALTH_TIMEOUT):
        """Polls /healthz until 200; False if sagad exits or the time runs out."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False
            try:
                status, _ = http_call(self.port, "GET", "/healthz", timeout=2)
                if status == 200:
                    return True
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.01)
        return False

    def start(self):
        self.spawn()
        if not self.wait_healthy():
            raise SetupError("sagad did not become healthy within %.0f s (exit %s); see %s:\n%s"
                             % (HEALTH_TIMEOUT, self.proc.poll(), self.log_path, self.log_tail()))

    def check_alive(self):
        """Notes (and restarts after) a death we did not cause."""
        rc = self.proc.poll()
        if rc is not None:
            self.unexpected_exits.append(rc)
            log("  sagad exited by itself (status %s); restarting" % rc)
            self.start()

    def kill9(self):
        self.check_alive()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=20)  # waitpid: the old process is gone before the restart

    def stop(self):
        """SIGTERM, then SIGKILL after STOP_GRACE. Returns (exit status, seconds, forced)."""
        if self.proc is None or self.proc.poll() is not None:
            return (self.proc.returncode if self.proc else None), 0.0, False
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=STOP_GRACE)
            return rc, time.monotonic() - t0, False
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=20), time.monotonic() - t0, True

    def log_tail(self, n=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""


class SetupError(Exception):
    pass


def http_call(port, method, path, body=None, headers=None, timeout=10, conn=None):
    """One request; returns (status, parsed JSON or raw text). Raises on transport errors."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            doc = json.loads(raw) if raw else None
        except ValueError:
            doc = raw.decode("utf-8", "replace")
        return resp.status, doc
    finally:
        if own:
            conn.close()


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# ---- the workload ------------------------------------------------------------------------

class Saga:
    __slots__ = ("i", "key", "input", "id", "status", "posts", "replayed", "error")

    def __init__(self, i, key, inp):
        self.i, self.key, self.input = i, key, inp
        self.id = None  # set once a 200/201 came back: the saga is started
        self.status = None  # HTTP status of that answer
        self.posts = 0
        self.replayed = False  # the first answer was 200: an earlier, unanswered POST won
        self.error = None


def make_sagas(n, seed):
    rng = random.Random(seed)
    sagas = []
    for i in range(n):
        u = rng.random()
        fail_at = ("check" if u < 0.07 else "pivot" if u < 0.14 else "slow" if u < 0.16
                   else "none")
        v = rng.random()
        sleep_ms = (rng.randint(0, 3) if v < 0.70 else rng.randint(5, 40) if v < 0.95
                    else rng.randint(100, 400))
        inp = {"n": i, "fail_at": fail_at, "sleep_ms": sleep_ms, "flaky": rng.choice([0, 0, 1, 2])}
        sagas.append(Saga(i, "crash-%d-%d" % (seed, i), inp))
    return sagas


def expected_status(inp):
    return "COMPLETED" if inp["fail_at"] == "none" else "COMPENSATED"


class Submitter:
    """Client threads that start every saga exactly once from the caller's point of view.

    Saga i may be submitted once `gate(i)` kills have happened, so submissions spread
    over the first part of the kill schedule and the last kills find only running sagas.
    """

    def __init__(self, sagas, port, n_threads, deadline, gate, counters):
        self.sagas = sagas
        self.port = port
        self.deadline = deadline
        self.gate = gate
        self.counters = counters  # shared dict: kills, stop
        self.next = 0
        self.lock = threading.Lock()
        self.status_5xx = []  # (status, body) other than 503
        self.threads = [threading.Thread(target=self.run, name="submit-%d" % t, daemon=True)
                        for t in range(n_threads)]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self, until):
        for t in self.threads:
            t.join(max(0.0, until - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def done(self):
        """True once every saga has its answer (or gave up)."""
        return all(s.id is not None or s.error is not None for s in self.sagas)

    def take(self):
        with self.lock:
            if self.next >= len(self.sagas):
                return None
            s = self.sagas[self.next]
            self.next += 1
            return s

    def run(self):
        conn = None
        while True:
            s = self.take()
            if s is None:
                break
            while (self.counters["kills"] < self.gate(s.i) and not self.counters["open"]
                   and not self.counters["stop"] and time.monotonic() < self.deadline):
                time.sleep(0.005)
            conn = self.submit(s, conn)
        if conn is not None:
            conn.close()

    def submit(self, s, conn):
        body = json.dumps(s.input)
        headers = {"Content-Type": "application/json", "Idempotency-Key": s.key}
        path = "/v1/workflows/%s/instances" % WORKFLOW
        while not self.counters["stop"]:
            if time.monotonic() > self.deadline:
                s.error = "no answer before the deadline after %d POSTs" % s.posts
                return conn
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
            s.posts += 1
            try:
                status, doc = http_call(self.port, "POST", path, body, headers, conn=conn)
            except (OSError, http.client.HTTPException):
                # sagad was killed (or is restarting): the same key again, shortly.
                conn.close()
                conn = None
                time.sleep(0.02)
                continue
            if status in (200, 201) and isinstance(doc, dict) and isinstance(doc.get("id"), str):
                s.id, s.status = doc["id"], status
                s.replayed = status == 200
                return conn
            if status in (429, 503):
                time.sleep(0.05)
                continue
            if status >= 500:
                with self.lock:
                    self.status_5xx.append((status, doc))
                time.sleep(0.05)
                continue
            s.error = "HTTP %d: %s" % (status, str(doc)[:300])
            return conn
        s.error = "stopped before an answer"
        return conn


# ---- reading the databases ---------------------------------------------------------------

def open_ro(path):
    # mode=ro: the checker must never write, checkpoint or recover a file it inspects.
    return sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)


def count_live(db):
    try:
        c = open_ro(db)
        try:
            return c.execute("SELECT count(*) FROM instances"
                             " WHERE status IN ('RUNNING', 'COMPENSATING')").fetchone()[0]
        finally:
            c.close()
    except sqlite3.Error:
        return None


def columns(conn, table):
    return {r[1] for r in conn.execute("PRAGMA table_info(%s)" % table)}


def sagad_starts(log_path):
    """Wall-clock ms of every start of sagad, from the markers spawn() writes."""
    out = []
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                if line.startswith("=== crash_test: start #"):
                    out.append(int(float(line.rsplit(" at ", 1)[1]) * 1000))
    except (OSError, ValueError, IndexError):
        pass
    return sorted(out)


def integrity(path):
    try:
        c = open_ro(path)
        try:
            rows = [r[0] for r in c.execute("PRAGMA integrity_check")]
        finally:
            c.close()
    except sqlite3.Error as e:
        return ["cannot open: %s" % e]
    return [] if rows == ["ok"] else rows


# ---- checks ------------------------------------------------------------------------------

class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, problems, info=""):
        """One check: passes when problems is empty."""
        if problems:
            self.failed += 1
            log("FAIL %s: %d problem(s)" % (name, len(problems)))
            for p in problems[:MAX_EXAMPLES]:
                log("       %s" % p)
            if len(problems) > MAX_EXAMPLES:
                log("       ... and %d more" % (len(problems) - MAX_EXAMPLES))
        else:
            self.passed += 1
            log("PASS %s%s" % (name, (" (%s)" % info) if info else ""))


def load_history(conn):
    hist = {}
    for iid, seq, ts, typ, step, attempt, detail in conn.execute(
            "SELECT instance_id, seq, ts_ms, type, step, attempt, detail FROM history"
            " ORDER BY instance_id, seq"):
        try:
            d = json.loads(detail) if detail else {}
        except ValueError:
            d = {"_unparsed": detail}
        d["_ts"] = ts
        hist.setdefault(iid, []).append((seq, typ, step, attempt, d))
    return hist


def step_name(step):
    return STEPS[step] if isinstance(step, int) and 0 <= step < len(STEPS) else None


def analyse_history(rows, status):
    """Walks one history; returns (problems, facts) where facts describe the path taken."""
    probs = []
    facts = {"completed": [], "done_order": [], "compensated": [], "timed_out": set(),
             "in_doubt": set(),
             "comp_timed_out": set(), "dispatched": set(), "comp_dispatched": set(),
             "failed": {}, "skipped": [], "timeouts": []}
    seqs = [r[0] for r in rows]
    if seqs != list(range(1, len(rows) + 1)):
        probs.append("seq not contiguous 1..%d: %s" % (len(rows), seqs[:20]))
    if not rows or rows[0][1] != "saga_started":
        probs.append("does not start with saga_started (%s)" % (rows[0][1] if rows else "empty"))
    cur, ends, ended_at = "RUNNING", 0, None
    attempts, comp_attempts = {}, {}
    for seq, typ, step, attempt, d in rows:
        name = step_name(step)
        if ended_at is not None and typ not in AFTER_END:
            probs.append("seq %d %s after the terminal status change" % (seq, typ))
        if typ == "status_changed":
            frm, to = d.get("from"), d.get("to")
            if frm != cur or (frm, to) not in LEGAL:
                probs.append("seq %d illegal status change %s -> %s (status was %s)"
                             % (seq, frm, to, cur))
            cur = to
            if to in TERMINAL:
                ends += 1
                ended_at = seq
        elif typ in ("attempt_dispatched", "compensation_dispatched"):
            comp = typ == "compensation_dispatched"
            table = comp_attempts if comp else attempts
            if name is None:
                probs.append("seq %d %s of unknown step %r" % (seq, typ, step))
                continue
            if attempt != table.get(name, 0) + 1:
                probs.append("seq %d %s %s attempt %s after attempt %s"
                             % (seq, typ, name, attempt, table.get(name, 0)))
            table[name] = attempt
            if comp:
                facts["comp_dispatched"].add(name)
                if cur != "COMPENSATING":
                    probs.append("seq %d compensation of %s dispatched while %s" % (seq, name, cur))
            else:
                facts["dispatched"].add(name)
                if cur != "RUNNING":
                    probs.append("seq %d %s dispatched while %s" % (seq, name, cur))
                prev = STEPS[:STEPS.index(name)]
                if any(p not in facts["completed"] and p not in facts["skipped"] for p in prev):
                    probs.append("seq %d %s dispatched before the steps ahead of it completed"
                                 % (seq, name))
        elif typ == "step_completed":
            if name is None or name in facts["completed"]:
                probs.append("seq %d step_completed %r twice or unknown" % (seq, name or step))
                continue
            if attempt != attempts.get(name):
                probs.append("seq %d %s completed by attempt %s, last dispatched %s"
                             % (seq, name, attempt, attempts.get(name)))
            facts["completed"].append(name)
            if name not in facts["done_order"]:
                facts["done_order"].append(name)
        elif typ == "attempt_failed":
            if d.get("code") == "saga.timeout" and name is not None:
                facts["timed_out"].add(name)
                facts["timeouts"].append((name, False, attempt, d["_ts"]))
            # A timeout or a retryable failure leaves the effect in doubt: the step is
            # compensated like a completion (a no-op when nothing happened).
            if name is not None and (d.get("code") == "saga.timeout" or d.get("retryable") is True):
                facts["in_doubt"].add(name)
                if name not in facts["done_order"]:
                    facts["done_order"].append(name)
        elif typ == "compensation_attempt_failed":
            if d.get("code") == "saga.timeout":
                facts["comp_timed_out"].add(name)
                facts["timeouts"].append((name, True, attempt, d["_ts"]))
        elif typ == "step_skipped":
            if name not in CONDITIONAL or name in facts["skipped"] or name in facts["dispatched"]:
                probs.append("seq %d step_skipped %r" % (seq, name or step))
            facts["skipped"].append(name)
        elif typ == "step_failed":
            facts["failed"][name] = d.get("code")
        elif typ == "step_compensated":
            if name is None or name in facts["compensated"]:
                probs.append("seq %d step_compensated %r twice or unknown" % (seq, name or step))
                continue
            if name not in COMPENSABLE:
                probs.append("seq %d step_compensated for %s, which has no compensation"
                             % (seq, name))
            if name not in facts["done_order"]:
                probs.append("seq %d %s compensated but never completed or timed out" % (seq, name))
            if cur != "COMPENSATING":
                probs.append("seq %d %s compensated while %s" % (seq, name, cur))
            facts["compensated"].append(name)
    if ends != 1:
        probs.append("%d terminal status changes" % ends)
    if cur != status:
        probs.append("history ends in %s but the instance says %s" % (cur, status))
    # Compensations undo exactly the completed (or maybe-completed) compensable steps,
    # latest completion first.
    if status in ("COMPENSATED", "COMPENSATION_FAILED"):
        want = [s for s in reversed(facts["done_order"]) if s in COMPENSABLE]
        if status == "COMPENSATED" and facts["compensated"] != want:
            probs.append("compensated %s, expected %s (reverse of completions %s)"
                         % (facts["compensated"], want, facts["done_order"]))
    elif facts["compensated"] or facts["comp_dispatched"]:
        probs.append("compensations in a %s saga" % status)
    if status == "COMPLETED" and facts["completed"] != [s for s in STEPS if s not in CONDITIONAL]:
        probs.append("COMPLETED with steps %s completed" % facts["completed"])
    return probs, facts


def expected_path(inp, in_doubt=()):
    """(completed steps, failing step or None, compensated steps in order). A failing step
    that timed out or failed retryably may have had its effect, so it is compensated
    first."""
    fail = FAIL_STEP.get(inp["fail_at"])
    if fail is None:
        return [s for s in STEPS if s not in CONDITIONAL], None, []
    done = [s for s in STEPS[:STEPS.index(fail)] if s not in CONDITIONAL]
    order = done + ([fail] if fail in in_doubt else [])
    return done, fail, [s for s in reversed(order) if s in COMPENSABLE]


def unexpected_timeouts(inp, facts):
    """Timed-out forward steps other than the one designed to time out."""
    return facts["timed_out"] - ({DESIGNED_TIMEOUT} if inp["fail_at"] == "slow" else set())


def check_effects(iid, inst_status, inp, facts, eff):
    """Effect rows of one instance against its history; returns problems."""
    probs = []
    fwd = {r["step_id"]: r for r in eff if not r["compensation"]}
    comp = {r["step_id"]: r for r in eff if r["compensation"]}
    for r in eff:
        want_key = "%s/%s%s" % (iid, r["step_id"], "/compensate" if r["compensation"] else "")
        if r["key"] != want_key or r["step_id"] not in STEPS:
            probs.append("effect row key %r (step %r, compensation %s)"
                         % (r["key"], r["step_id"], r["compensation"]))
    for s, r in fwd.items():
        if s not in facts["dispatched"]:
            probs.append("forward effect of %s, a step the saga never dispatched (%s)"
                         % (s, r["outcome"]))
    for s, r in comp.items():
        if s not in facts["comp_dispatched"]:
            probs.append("compensation effect of %s, never dispatched (%s)" % (s, r["outcome"]))
    ok_fwd = [s for s in STEPS if s in fwd and fwd[s]["outcome"] == "ok"]
    for s in facts["completed"]:
        if s not in ok_fwd:
            probs.append("%s completed in the history but has no ok effect (%s)"
                         % (s, fwd[s]["outcome"] if s in fwd else "no row"))
    for s in ok_fwd:
        if s not in facts["completed"] and s not in facts["in_doubt"]:
            probs.append("%s has an ok effect but the saga never saw it complete" % s)
    _, fail, _ = expected_path(inp)
    if fail is not None and fail in fwd and fail != DESIGNED_TIMEOUT:
        r = fwd[fail]
        if r["outcome"] != "fatal" or r["error_code"] != "test.failed":
            probs.append("failing step %s recorded %s/%s" % (fail, r["outcome"], r["error_code"]))
    if "notify" in fwd and fwd["notify"]["outcome"] == "ok" and \
            fwd["notify"]["attempt"] != inp["flaky"] + 1:
        probs.append("notify succeeded on attempt %s, expected %d (flaky %d)"
                     % (fwd["notify"]["attempt"], inp["flaky"] + 1, inp["flaky"]))
    if inst_status == "COMPLETED":
        if ok_fwd != [s for s in STEPS if s not in CONDITIONAL]:
            probs.append("COMPLETED with ok effects for %s only" % ok_fwd)
        if comp:
            probs.append("COMPLETED but compensation effects for %s" % sorted(comp))
    elif inst_status == "COMPENSATED":
        for s in STEPS:
            c = comp.get(s)
            if s in ok_fwd and s in COMPENSABLE:
                if c is None or c["outcome"] != "ok":
                    probs.append("%s happened but its compensation is %s"
                                 % (s, c["outcome"] if c else "missing"))
            elif c is not None and not (s in facts["in_doubt"] and c["outcome"] == "noop"):
                probs.append("compensation of %s (%s) without its forward effect"
                             % (s, c["outcome"]))
        undone = [s for s in ok_fwd if s in COMPENSABLE and s in comp]
        by_fwd = sorted(undone, key=lambda s: fwd[s]["seq"])
        comp_seqs = [comp[s]["seq"] for s in by_fwd]
        if comp_seqs != sorted(comp_seqs, reverse=True):
            probs.append("compensations not in reverse order: forward %s, compensation seqs %s"
                         % (by_fwd, comp_seqs))
        if ok_fwd and comp and min(r["seq"] for r in comp.values()) < \
                max(fwd[s]["seq"] for s in ok_fwd):
            probs.append("a compensation was recorded before the last forward effect")
    return probs


def run_checks(ck, args, sagas, sagad, kills, stats):
    started = [s for s in sagas if s.id is not None]
    ck.check("every saga was started (a 200/201 with an id came back)",
             ["saga %d key %s: %s" % (s.i, s.key, s.error or "no answer")
              for s in sagas if s.id is None],
             "%d of %d" % (len(started), len(sagas)))
    ck.check("sagad was killed at least --kills times",
             [] if kills >= args.kills else ["only %d kills of %d" % (kills, args.kills)],
             "%d kills" % kills)
    ck.check("sagad never died by itself",
             ["exit status %s" % rc for rc in sagad.unexpected_exits])
    errors = []
    try:
        with open(sagad.log_path, errors="replace") as f:
            errors = [line.rstrip() for line in f if '"level":"error"' in line]
    except OSError:
        pass
    ck.check("sagad logged no errors", errors)

    conn = open_ro(sagad.db)
    try:
        icols = columns(conn, "instances")
        keycol = "idempotency_key" if "idempotency_key" in icols else "NULL"
        histcol = "hist_seq" if "hist_seq" in icols else "NULL"
        inst = {}
        for iid, wf, status, inp, key, hseq in conn.execute(
                "SELECT id, workflow, status, input, %s, %s FROM instances" % (keycol, histcol)):
            inst[iid] = {"workflow": wf, "status": status, "input": inp, "key": key,
                         "hist_seq": hseq}
        hist = load_history(conn)
        keys = {}
        if "idempotency_keys" in {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}:
            for wf, key, iid in conn.execute(
                    "SELECT workflow, key, instance_id FROM idempotency_keys"):
                keys.setdefault((wf, key), []).append(iid)
        events = {}
        for typ, cid in conn.execute("SELECT type, correlation_id FROM events"):
            events.setdefault(cid, []).append(typ)
    finally:
        conn.close()

    # One instance per key and per started saga; nothing else was created.
    probs = []
    by_id = {}
    for s in started:
        if s.id in by_id:
            probs.append("sagas %d and %d got the same id %s" % (by_id[s.id].i, s.i, s.id))
        by_id[s.id] = s
        if s.id not in inst:
            probs.append("saga %d: id %s has no instance row" % (s.i, s.id))
            continue
        row = inst[s.id]
        if row["workflow"] != WORKFLOW:
            probs.append("%s: workflow %s" % (s.id, row["workflow"]))
        # The key's home is idempotency_keys; instances.idempotency_key may be unused (NULL).
        if row["key"] is not None and row["key"] != s.key:
            probs.append("%s: idempotency_key %r, sent %r" % (s.id, row["key"], s.key))
        if keys and keys.get((WORKFLOW, s.key)) != [s.id]:
            probs.append("key %s maps to %s in idempotency_keys, client got %s"
                         % (s.key, keys.get((WORKFLOW, s.key)), s.id))
        try:
            if json.loads(row["input"]) != s.input:
                probs.append("%s: stored input %s, sent %s" % (s.id, row["input"], s.input))
        except ValueError:
            probs.append("%s: stored input is not JSON: %r" % (s.id, row["input"][:100]))
    extra = sorted(set(inst) - set(by_id))
    for iid in extra:
        probs.append("instance %s (key %r) was never returned to a client"
                     % (iid, inst[iid]["key"]))
    ck.check("one instance per idempotency key and per started saga, none extra", probs,
             "%d instances" % len(inst))

    ck.check("every instance is terminal",
             ["%s is %s" % (iid, r["status"]) for iid, r in sorted(inst.items())
              if r["status"] not in TERMINAL])
    ck.check("every outcome matches its input",
             ["%s (saga %d, fail_at %s): %s, expected %s"
              % (s.id, s.i, s.input["fail_at"], inst[s.id]["status"], expected_status(s.input))
              for s in started if s.id in inst
              and inst[s.id]["status"] != expected_status(s.input)])

    # Histories.
    hist_probs, path_probs, facts_of = [], [], {}
    for iid, row in sorted(inst.items()):
        rows = hist.get(iid, [])
        probs, facts = analyse_history(rows, row["status"])
        if row["hist_seq"] is not None and row["hist_seq"] != len(rows):
            probs.append("instances.hist_seq %s but %d history rows" % (row["hist_seq"], len(rows)))
        hist_probs += ["%s: %s" % (iid, p) for p in probs]
        facts_of[iid] = facts
        s = by_id.get(iid)
        if s is None or row["status"] != expected_status(s.input):
            continue
        done, fail, undo = expected_path(s.input, facts["in_doubt"])
        if unexpected_timeouts(s.input, facts):
            continue  # a timed-out attempt changes the path; the generic rules still hold
        if facts["completed"] != done or (fail and fail not in facts["failed"]) or \
                facts["compensated"] != undo:
            path_probs.append("%s (fail_at %s): completed %s, failed %s, compensated %s;"
                              " expected %s, %s, %s"
                              % (iid, s.input["fail_at"], facts["completed"],
                                 sorted(facts["failed"]), facts["compensated"], done, fail, undo))
    orphans = sorted(set(hist) - set(inst))
    hist_probs += ["history rows for unknown instance %s" % iid for iid in orphans]
    ck.check("each history is a legal path with exactly one terminal status change", hist_probs,
             "%d histories, %d rows" % (len(hist), sum(len(r) for r in hist.values())))
    ck.check("each history took the path its input asks for", path_probs)
    # Steps time out after 20 s and a healthy run lasts seconds: a timeout means a task or
    # its result was lost by a live sagad (recovery re-sends what a killed one had out).
    n_timeouts = sum(len(f["timeouts"]) for f in facts_of.values())
    n_designed = sum(1 for f in facts_of.values() if DESIGNED_TIMEOUT in f["timed_out"])
    # Domain events: one start and one end event per instance.
    ev_probs = []
    for iid, row in sorted(inst.items()):
        got = sorted(events.get(iid, []))
        want = sorted(["crash.started", {"COMPLETED": "crash.completed",
                                         "COMPENSATED": "crash.compensated"}
                       .get(row["status"], "crash.failed")])
        if got != want:
            ev_probs.append("%s (%s): events %s, expected %s" % (iid, row["status"], got, want))
    for cid in sorted(set(events) - set(inst)):
        ev_probs.append("events for unknown correlation id %r: %s" % (cid, events[cid]))
    ck.check("each domain event was published exactly once", ev_probs,
             "%d events" % sum(len(v) for v in events.values()))

    # Effects.
    eff_db = os.path.join(sagad.data, "test-effects.db")
    eff_of, deliveries, delivered, calls = {}, {}, set(), {}
    eff_probs = []
    if not os.path.exists(eff_db):
        eff_probs.append("%s does not exist" % eff_db)
    else:
        c = open_ro(eff_db)
        try:
            c.row_factory = sqlite3.Row
            for r in c.execute("SELECT * FROM effects ORDER BY seq"):
                eff_of.setdefault(r["instance_id"], []).append(dict(r))
            # (key, attempt) more than once: the same attempt delivered again (a restart
            # re-sends what was in flight), as opposed to a retry (a new attempt).
            for key, attempt, ts in c.execute("SELECT key, attempt, ts_us FROM deliveries"):
                calls.setdefault((key, attempt), []).append(ts // 1000)
            for k, v in calls.items():
                deliveries[k] = len(v)
                delivered.add(k[0])
            seqs = [r[0] for r in c.execute("SELECT seq FROM effects ORDER BY seq")]
        finally:
            c.close()
        if seqs != list(range(1, len(seqs) + 1)):
            eff_probs.append("effects.seq is not 1..%d without gaps or repeats" % len(seqs))
        for iid in sorted(set(eff_of) - set(inst)):
            eff_probs.append("effects for unknown instance %r: %s"
                             % (iid, [r["key"] for r in eff_of[iid]]))
        for iid, row in sorted(inst.items()):
            s = by_id.get(iid)
            if s is None:
                continue
            eff_probs += ["%s (fail_at %s, %s): %s" % (iid, s.input["fail_at"], row["status"], p)
                          for p in check_effects(iid, row["status"], s.input, facts_of[iid],
                                                 eff_of.get(iid, []))]
        for rows in eff_of.values():
            for r in rows:
                if r["key"] not in delivered:
                    eff_probs.append("effect %s has no delivery row" % r["key"])
    n_eff = sum(len(v) for v in eff_of.values())
    stats["effects"] = n_eff
    stats["redelivered"] = sum(1 for n in deliveries.values() if n > 1)
    stats["deliveries"] = sum(deliveries.values())
    ck.check("each forward effect at most once and only when reached; each compensation exactly"
             " once when its forward effect happened, in reverse order", eff_probs,
             "%d effects, %d deliveries, %d attempts delivered more than once"
             % (n_eff, stats["deliveries"], stats["redelivered"]))

    # A timeout is fine when the task waited in a queue or sagad was killed meanwhile
    # (recovery re-sends it with a fresh timeout). It hides a lost result when the call
    # began long before the attempt timed out and no restart came in between.
    starts = sagad_starts(sagad.log_path)
    lost = []
    for iid, f in sorted(facts_of.items()):
        for name, comp, attempt, t_ms in f["timeouts"]:
            key = "%s/%s%s" % (iid, name, "/compensate" if comp else "")
            for call_ms in calls.get((key, attempt), []):
                restarted = bisect.bisect_right(starts, call_ms) < bisect.bisect_left(starts, t_ms)
                if call_ms + LOST_MARGIN_MS < t_ms and not restarted:
                    lost.append("%s attempt %d: called %.1f s before it timed out, no restart"
                                " in between" % (key, attempt, (t_ms - call_ms) / 1000.0))
                    break
    ck.check("no timeout hid a lost result", lost,
             "%d attempts timed out, %d of them the designed timeout of %s"
             % (n_timeouts, n_designed, DESIGNED_TIMEOUT))

    for label, path in (("sagad.db", sagad.db), ("test-effects.db", eff_db)):
        ck.check("PRAGMA integrity_check is ok on %s" % label, integrity(path))
    return inst


# ---- the run -----------------------------------------------------------------------------

def kill_schedule(args, rng):
    """Delays of each kill: mostly uptime after /healthz, some during the startup itself.
    Between them, a few graceful stops (SIGTERM under load), which are not kills."""
    plan = []
    for k in range(args.kills - 1):  # the first kill is at the first boot, see run()
        if rng.random() < 0.15:
            plan.append(("startup", rng.uniform(0.0, 0.06)))
        else:
            plan.append(("running", rng.uniform(args.min_uptime, args.max_uptime)))
        if rng.random() < args.term_share:
            plan.append(("term", rng.uniform(args.min_uptime, args.max_uptime)))
    return plan


def run(args, tmp, ck):
    t_start = time.monotonic()
    deadline = t_start + args.timeout
    port = args.port or free_port()
    sagas = make_sagas(args.sagas, args.seed)
    krng = random.Random("kill-%d" % args.seed)
    plan = kill_schedule(args, krng)
    n_gate = max(1, int(args.kills * 0.75)) - 1  # plan entries exclude the first-boot kill
    i_gate = 0  # the plan entry of kill number n_gate
    for i, (kind, _) in enumerate(plan):
        i_gate = i
        if sum(1 for kd, _ in plan[:i] if kd != "term") >= n_gate:
            break
    counters = {"kills": 0, "stop": False, "open": False}

    def gate(i):
        return 1 + i * n_gate // max(1, len(sagas))

    sagad = Sagad(args, tmp, port)
    stats = {}
    submitter = None
    kill_log = []
    terms = []  # graceful stops under load: (exit status, seconds, forced, live)
    try:
        if args.kills > 0:
            # The first kill hits the very first start: creating the schema, loading the
            # definitions. The next start must cope with whatever part of that was durable.
            sagad.spawn()
            delay = krng.uniform(0.0, 0.03)
            time.sleep(delay)
            sagad.kill9()
            counters["kills"] += 1
            kill_log.append(("startup", "first boot", None))
            log("  kill  1/%d first boot after %5.3f s" % (args.kills, delay))
        sagad.start()
        t_ready = time.monotonic()
        submitter = Submitter(sagas, port, args.clients, deadline - 60, gate, counters)
        submitter.start()
        respawn = False  # sagad was killed and is not running yet
        for k, (kind, delay) in enumerate(plan):
            if time.monotonic() > deadline - 90:
                log("  out of time: stopping kills after %d" % k)
                break
            live = None
            if kind == "term":
                if respawn:
                    sagad.start()
                time.sleep(delay)
                live = count_live(sagad.db)
                sagad.check_alive()
                rc, secs, forced = sagad.stop()
                respawn = True
                terms.append((rc, secs, forced, live))
                log("  stop %2d    SIGTERM  %-10s after %5.3f s: %s live, exit %s in %.2f s%s"
                    % (len(terms), "submitting" if not submitter.done() else "draining", delay,
                       "?" if live is None else live, rc, secs, " (SIGKILLed)" if forced else ""))
                continue
            if kind == "startup" and not respawn:
                kind = "running"  # sagad is already up: an early kill of a running one
            if k == i_gate:
                # The remaining kills hit sagas that are still running after the last
                # submission: wait for it (sagad is up while the clients finish).
                counters["open"] = True
                if respawn:
                    sagad.start()
                    respawn = False
                    kind = "running"
                while not submitter.done() and time.monotonic() < deadline - 90:
                    time.sleep(0.005)
            if kind == "startup":
                sagad.spawn()
                time.sleep(delay)  # killed while it loads, migrates, recovers or binds
            else:
                if respawn:
                    sagad.start()
                time.sleep(delay)
                live = count_live(sagad.db)
            phase = "submitting" if not submitter.done() else "draining"
            sagad.kill9()
            respawn = True
            counters["kills"] += 1
            kill_log.append((kind, phase, live))
            started = sum(1 for s in sagas if s.id is not None)
            log("  kill %2d/%d %-8s %-10s after %5.3f s: %s live, %d/%d started"
                % (len(kill_log), args.kills, kind, phase, delay, "?" if live is None else live,
                   started, len(sagas)))
        if respawn:
            sagad.start()
        counters["open"] = True  # every gate opens, should the kills have stopped early
        if not submitter.join(deadline - 30):
            counters["stop"] = True
            submitter.join(time.monotonic() + 20)
        t_submitted = time.monotonic()

        # Every instance must finish. Bounded by the overall deadline, and by --stall:
        # a run whose live count stops falling is broken, waiting longer shows nothing new.
        live, best, t_best = None, None, time.monotonic()
        while time.monotonic() < deadline - 25 and time.monotonic() - t_best < args.stall:
            sagad.check_alive()
            live = count_live(sagad.db)
            if live == 0:
                break
            if live is not None and (best is None or live < best):
                best, t_best = live, time.monotonic()
            time.sleep(0.1)
        t_drained = time.monotonic()
        ck.check("every instance finished (the live count never stalled for %.0f s)" % args.stall,
                 [] if live == 0 else ["%s instances still live after %.1f s, none finished in"
                                       " the last %.1f s" % (live, t_drained - t_submitted,
                                                             t_drained - t_best)],
                 "drained %.1f s after the last submission" % (t_drained - t_submitted))

        # REST agrees with the database, and a replayed key gives the same instance.
        answered = [s for s in sagas if s.id is not None]
        sample = random.Random(args.seed + 1).sample(answered, min(50, len(answered)))
        rest_probs, replay_probs = [], []
        for s in sample:
            try:
                st, doc = http_call(port, "GET", "/v1/instances/%s" % s.id)
                if st != 200 or not isinstance(doc, dict) or doc.get("id") != s.id or \
                        doc.get("status") != expected_status(s.input):
                    rest_probs.append("GET %s: %d %s" % (s.id, st, str(doc)[:200]))
                st, doc = http_call(port, "POST", "/v1/workflows/%s/instances" % WORKFLOW,
                                    json.dumps(s.input), {"Content-Type": "application/json",
                                                          "Idempotency-Key": s.key})
                if st != 200 or not isinstance(doc, dict) or doc.get("id") != s.id:
                    replay_probs.append("POST again with key %s: %d %s, first id %s"
                                        % (s.key, st, str(doc)[:200], s.id))
            except (OSError, http.client.HTTPException) as e:
                rest_probs.append("%s: %s" % (s.id, e))
        ck.check("GET /v1/instances/{id} reports the terminal status", rest_probs,
                 "%d sampled" % len(sample))
        ck.check("a replayed Idempotency-Key returns 200 and the same id", replay_probs,
                 "%d sampled" % len(sample))
        ck.check("every SIGTERM under load stopped sagad with status 0 within %.0f s" % STOP_GRACE,
                 ["exit status %s after %.1f s%s with %s live" % (rc, secs,
                                                                  ", SIGKILLed" if forced else "",
                                                                  live)
                  for rc, secs, forced, live in terms if rc != 0 or forced],
                 "%d stops" % len(terms))
        ck.check("no 5xx answers other than 503",
                 ["HTTP %d: %s" % (st, str(doc)[:200]) for st, doc in submitter.status_5xx])
    finally:
        counters["stop"] = True
        rc, secs, forced = sagad.stop()
    ck.check("sagad answered /healthz within %.0f s of every start" % HEALTH_TIMEOUT, [],
             "%d starts" % sagad.starts)
    ck.check("sagad stops on SIGTERM within %.0f s with status 0" % STOP_GRACE,
             [] if rc == 0 and not forced else
             ["exit status %s after %.1f s%s" % (rc, secs, ", SIGKILLed" if forced else "")],
             "%.2f s" % secs)

    inst = run_checks(ck, args, sagas, sagad, counters["kills"], stats)
    t_end = time.monotonic()

    by_status = {}
    for r in inst.values():
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    n_fail = sum(1 for s in sagas if s.input["fail_at"] != "none")
    log("")
    log("summary: %d sagas (%d designed to compensate), outcomes %s"
        % (len(sagas), n_fail, ", ".join("%s %d" % kv for kv in sorted(by_status.items()))))
    log("  kills %d (%d during startup, %d while submitting, %d after submission finished,"
        " %d with instances live); %d starts of sagad"
        % (len(kill_log), sum(1 for k in kill_log if k[0] == "startup"),
           sum(1 for k in kill_log if k[1] == "submitting"),
           sum(1 for k in kill_log if k[1] == "draining"),
           sum(1 for k in kill_log if k[2]), sagad.starts))
    log("  graceful SIGTERM restarts under load %d" % len(terms))
    log("  POSTs %d for %d sagas; %d first answers were replays (200) of a lost answer"
        % (sum(s.posts for s in sagas), len(sagas), sum(1 for s in sagas if s.replayed)))
    log("  effects %s, deliveries %s, attempts delivered more than once %s"
        % (stats.get("effects"), stats.get("deliveries"), stats.get("redelivered")))
    log("  time %.1f s (start %.1f, kills+submission %.1f, drain %.1f, checks %.1f)"
        % (t_end - t_start, t_ready - t_start, t_submitted - t_ready, t_drained - t_submitted,
           t_end - t_drained))


class Files:
    """The files of a finished run, for --recheck."""

    def __init__(self, folder):
        self.db = os.path.join(folder, "sagad.db")
        self.data = os.path.join(folder, "data")
        self.log_path = os.path.join(folder, "sagad.log")
        self.unexpected_exits = []


def recheck(args):
    """Runs the database checks again on a kept folder (to debug, or to test the checker
    on a doctored copy). Sagas are rebuilt from the seed; ids come from idempotency_keys."""
    files = Files(args.recheck)
    sagas = make_sagas(args.sagas, args.seed)
    conn = open_ro(files.db)
    try:
        ids = dict(conn.execute("SELECT key, instance_id FROM idempotency_keys"
                                " WHERE workflow = ?", (WORKFLOW,)))
    finally:
        conn.close()
    for s in sagas:
        s.id = ids.get(s.key)
    ck = Checks()
    run_checks(ck, args, sagas, files, args.kills, {})
    log("%d passed, %d failed" % (ck.passed, ck.failed))
    return 0 if ck.failed == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sagad", default=os.path.join(HERE, "..", "..", "build", "bin", "sagad"))
    ap.add_argument("--sagas", type=int, default=2000)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--clients", type=int, default=8, help="client threads")
    ap.add_argument("--threads", type=int, default=8, help="sagad worker threads")
    ap.add_argument("--term-share", type=float, default=0.1,
                    help="chance of a graceful SIGTERM restart after each kill")
    ap.add_argument("--min-uptime", type=float, default=0.05)
    ap.add_argument("--max-uptime", type=float, default=0.6)
    ap.add_argument("--timeout", type=float, default=600, help="overall bound, seconds")
    ap.add_argument("--stall", type=float, default=60,
                    help="give up waiting when no saga finished for this many seconds")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--recheck", metavar="DIR",
                    help="only run the database checks on the folder of an earlier run"
                         " (same --seed and --sagas)")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")
    argv = sys.argv[1:]
    rerun = [a for i, a in enumerate(argv)
             if not a.startswith("--seed") and (i == 0 or argv[i - 1] != "--seed")]
    log("crash_test: seed %d (rerun: %s %s--seed %d)"
        % (args.seed, sys.argv[0], "".join(a + " " for a in rerun), args.seed))
    if args.sagas < 1 or args.kills < 0 or args.timeout < 120:
        log("crash_test: need --sagas >= 1, --kills >= 0, --timeout >= 120")
        log("0 passed, 1 failed")
        return 2
    if args.recheck:
        return recheck(args)
    args.sagad = os.path.abspath(args.sagad)
    tmp = tempfile.mkdtemp(prefix="sagad-crash-")
    log("crash_test: sagad %s, folder %s" % (args.sagad, tmp))

    # A last resort: whatever hangs, the process ends and takes sagad with it.
    def watchdog():
        time.sleep(args.timeout + 60)
        log("crash_test: overall timeout exceeded, aborting")
        for p in list(_children):
            try:
                p.kill()
            except OSError:
                pass
        log("0 passed, 1 failed")
        os._exit(3)
    threading.Thread(target=watchdog, daemon=True).start()

    ck = Checks()
    try:
        run(args, tmp, ck)
    except SetupError as e:
        ck.check("sagad answered /healthz within %.0f s of every start" % HEALTH_TIMEOUT, [str(e)])
    except Exception as e:  # report, still print the closing line
        import traceback
        traceback.print_exc()
        ck.check("the test ran to its end", ["%s: %s" % (type(e).__name__, e)])
    ok = ck.failed == 0
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        log("crash_test: files kept in %s" % tmp)
    log("%d passed, %d failed" % (ck.passed, ck.failed))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
