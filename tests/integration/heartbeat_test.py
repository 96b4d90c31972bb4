#!/usr/bin/env python3
"""Heartbeats end to end: a real sagad (embedded transport, --test-activities, REST on a
free loopback port) runs the workflows of tests/fixtures/heartbeat, started over REST.

  progress   hb_progress: test.sleep runs 1.5 s and reports {"slept_ms", "of"} through
             sg_task_heartbeat; while it runs, GET /v1/instances/{id} shows the attempt
             "running" with its last heartbeat (heartbeat_ms, worker "sagad", progress);
             the saga completes on its first attempt; heartbeats stay out of the history.
  silent     hb_silent: test.sleep runs 1.5 s, longer than its `heartbeat: 400ms`, and
             never calls sg_task_heartbeat: not a failure, the transport heartbeats on its
             own (seen on the attempt, without progress), and the first attempt completes.

Usage: heartbeat_test.py --build DIR
Prints "N passed, N failed"; exit 1 on any failure. sagad is stopped by its pid.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import shop  # noqa: E402  (the HTTP helper the shop scripts and e2e tests use)

http = shop.http

WORKFLOWS = os.path.join(ROOT, "tests", "fixtures", "heartbeat")
TERMINAL = {"COMPLETED", "COMPENSATED", "FAILED", "COMPENSATION_FAILED"}
WAIT_S = 15.0  # bound of every wait; each saga takes about 1.5 s

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + what)
    else:
        failed += 1
        print("FAIL " + what)
    return cond


def free_port():
    """A loopback port nobody listens on now (the kernel's pick)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class Sagad:
    """sagad on a fresh folder; retried on another port if the one picked was taken."""

    def __init__(self, build, tmp):
        self.proc = None
        self.log_path = os.path.join(tmp, "sagad.log")
        self.log = open(self.log_path, "ab")
        for _ in range(3):
            port = free_port()
            self.base = "http://127.0.0.1:%d" % port
            args = [os.path.join(build, "bin", "sagad"), "--workflows", WORKFLOWS,
                    "--db", os.path.join(tmp, "sagad.db"), "--listen", "127.0.0.1:%d" % port,
                    "--test-activities", "--log-level", "info"]
            self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
            if self._ready():
                return
            self.stop()
        raise RuntimeError("sagad did not start; see %s" % self.log_path)

    def _ready(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if http("GET", self.base + "/healthz")[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(base, workflow):
    status, body = http("POST", "%s/v1/workflows/%s/instances" % (base, workflow), {})
    if status not in (200, 201) or not body or "id" not in body:
        raise RuntimeError("start %s: HTTP %d %s" % (workflow, status, body))
    return body["id"]


def attempts_of(inst, step):
    return [a for a in (inst or {}).get("attempts", []) if a.get("step") == step]


def has_heartbeat(a):
    return isinstance(a.get("heartbeat_ms"), (int, float)) and a["heartbeat_ms"] > 0


def follow(base, iid, step, seen_running):
    """Polls the instance until it ends; returns its last JSON. seen_running(attempt) is
    asked about every "running" attempt of step; the first one it accepts is returned as
    well (None if none was)."""
    found = None
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        status, inst = http("GET", "%s/v1/instances/%s" % (base, iid))
        if status != 200:
            raise RuntimeError("GET instance %s: HTTP %d %s" % (iid, status, inst))
        for a in attempts_of(inst, step):
            if found is None and a.get("status") == "running" and seen_running(a):
                found = dict(a)
        if inst.get("status") in TERMINAL:
            return inst, found
        time.sleep(0.05)
    raise RuntimeError("instance %s still running after %.0f s" % (iid, WAIT_S))


def progress_case(base):
    t0_ms = time.time() * 1000
    iid = start(base, "hb_progress")

    def with_progress(a):
        p = a.get("progress")
        return has_heartbeat(a) and isinstance(p, dict) and "slept_ms" in p

    inst, hb = follow(base, iid, "crunch", with_progress)
    check(hb is not None, "progress: a running attempt shows a heartbeat with progress")
    if hb is not None:
        check(hb.get("worker") == "sagad", "progress: worker is \"sagad\" (%r)" % hb.get("worker"))
        p = hb["progress"]
        check(p.get("of") == 1500 and 0 < p.get("slept_ms", 0) < 1500,
              "progress: progress is the handler's {slept_ms, of} (%s)" % json.dumps(p))
        check(t0_ms - 5000 <= hb["heartbeat_ms"] <= time.time() * 1000 + 5000,
              "progress: heartbeat_ms is a recent time in ms (%r)" % hb["heartbeat_ms"])
    check(inst.get("status") == "COMPLETED", "progress: saga COMPLETED (%s)" % inst.get("status"))
    att = attempts_of(inst, "crunch")
    check(len(att) == 1 and att[0].get("status") == "ok",
          "progress: one attempt, ok (%s)" % [(a.get("attempt"), a.get("status")) for a in att])
    status, hist = http("GET", "%s/v1/instances/%s/history" % (base, iid))
    events = (hist or {}).get("events", (hist or {}).get("items", [])) if status == 200 else None
    check(events is not None and events and
          not any("heartbeat" in (e.get("type") or "") for e in events),
          "progress: heartbeats are not in the history")


def silent_case(base):
    iid = start(base, "hb_silent")
    inst, hb = follow(base, iid, "nap", has_heartbeat)
    check(hb is not None and hb.get("worker") == "sagad",
          "silent: the transport heartbeats while the handler runs (%s)" % hb)
    if hb is not None:
        check(hb.get("progress") is None, "silent: without progress (%r)" % hb.get("progress"))
    check(inst.get("status") == "COMPLETED", "silent: saga COMPLETED (%s)" % inst.get("status"))
    att = attempts_of(inst, "nap")
    check(len(att) == 1 and att[0].get("status") == "ok",
          "silent: the first attempt completed, no heartbeat timeout (%s)"
          % [(a.get("attempt"), a.get("status"), (a.get("error") or {}).get("code")) for a in att])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    tmp = tempfile.mkdtemp(prefix="sg_heartbeat_")
    sagad = None
    try:
        ctl = os.path.join(build, "bin", "sagactl")
        for f in sorted(os.listdir(WORKFLOWS)):
            path = os.path.join(WORKFLOWS, f)
            r = subprocess.run([ctl, "validate", path], capture_output=True, text=True)
            check(r.returncode == 0, "sagactl validate %s: %s" % (f, (r.stdout + r.stderr).strip()))
        sagad = Sagad(build, tmp)
        for case in (progress_case, silent_case):
            try:
                case(sagad.base)
            except (RuntimeError, OSError) as e:
                check(False, "%s: %s" % (case.__name__, e))
    finally:
        if sagad is not None:
            sagad.stop()
            if failed:
                with open(sagad.log_path, "rb") as f:
                    sys.stdout.write(f.read()[-3000:].decode("utf-8", "replace"))
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
