#!/usr/bin/env python3
"""OpenAPI conformance of the REST gateway, with schemathesis as the client.

Starts a real sagad on loopback (the shipped workflows and one whose step heartbeats, the
shop seed, the test activities; the port its kernel picked, read from its log), makes a few
sagas and an order so that ids exist (one saga left running, its attempt heartbeating, so
heartbeat_ms, worker and progress are checked with values), then runs schemathesis
against gateway/openapi.json (which sagad serves byte for byte, checked too): every documented
operation, a bounded number of generated requests each (examples, coverage, fuzzing and
stateful phases), with the checks that responses are documented (status codes, content
types, headers, schemas) and that no request produces a 5xx. Known ids are offered to the
path parameters through schemathesis dictionaries, so requests reach real resources and
not only 404s. Afterwards sagad must still be alive and stop cleanly on SIGTERM.

Prints one line per check group and ends with "N passed, N failed" (one test per
operation as schemathesis reports it, plus this script's own checks). Exit 1 on failure.

Usage: tests/openapi/conformance.py [--build build] [--examples 25] [--seed N]
The schemathesis binary: $SCHEMATHESIS, else bin/schemathesis of $SAGAD_SCHEMATHESIS_VENV
(default ~/.cache/sagad/schemathesis-venv), where scripts/deps.sh test installs it.
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
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Every check but: ignored_auth (no --auth here: loopback serves everyone),
# positive_data_acceptance (valid input still meets 404s and 409s), and
# allow_header_conformance (GET /v1/workflows/{name} also answers /v1/workflows/validate,
# so its Allow lists GET, rightly).
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance,negative_data_rejection,"
          "missing_required_header,unsupported_method,use_after_free,ensure_resource_availability")

passed = 0
failed = 0


def ok(msg):
    global passed
    passed += 1
    print("ok: " + msg)


def ko(msg):
    global failed
    failed += 1
    print("FAIL: " + msg)


# A step with a heartbeat: its running attempt shows heartbeat_ms, worker and progress.
HEARTBEAT_YAML = """saga: conf_heartbeat
version: 1
steps:
  - id: long
    activity: test.sleep
    input: '{ms: 60000, heartbeat_every_ms: 100}'
    timeout: 2m
    heartbeat: 5s
    compensate: none
"""


def listening_port(log_path):
    """The port sagad logged ("gateway listening on ... (port N, ..."), or None yet."""
    with open(log_path) as f:
        m = re.search(r"gateway listening on \S+ \(port (\d+)", f.read())
    return int(m.group(1)) if m else None


def http(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_until(pred, timeout, what):
    """Polls pred (bounded); raises when it never holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def finished(base, iid):
    status, doc = http("GET", "%s/v1/instances/%s" % (base, iid))
    return status == 200 and doc["status"] not in ("RUNNING", "COMPENSATING")


def make_fixtures(base):
    """Instances of several outcomes and one order (placed, then cancelled)."""
    ids = []
    for decline in (False, True):
        status, doc = http("POST", base + "/v1/workflows/demo_order_test/instances",
                           {"order_id": "conf-%s" % decline, "decline": decline})
        if status != 201:
            raise RuntimeError("start demo_order_test: %d %s" % (status, doc))
        ids.append(doc["id"])
    order = {"order_id": "conf-1", "customer_id": "cus_alice", "email": "alice@example.com",
             "items": [{"sku": "BOOK-001", "qty": 1, "price": 2990}],
             "payment": {"card_token": "tok_visa_alice"}, "total": 2990, "currency": "EUR"}
    status, doc = http("POST", base + "/v1/orders", order)
    if status != 201:
        raise RuntimeError("POST /v1/orders: %d %s" % (status, doc))
    ids.append(doc["instance_id"])
    for iid in ids:
        wait_until(lambda: finished(base, iid), 60, "instance " + iid)
    status, doc = http("POST", base + "/v1/orders/conf-1/cancel", {"reason": "other"})
    if status not in (200, 202):
        raise RuntimeError("cancel order: %d %s" % (status, doc))
    ids.append(doc["instance_id"])
    wait_until(lambda: finished(base, ids[-1]), 60, "the cancel saga")
    # Left running: its attempt heartbeats, so the documents checked show non-null values.
    status, doc = http("POST", base + "/v1/workflows/conf_heartbeat/instances", {})
    if status != 201:
        raise RuntimeError("start conf_heartbeat: %d %s" % (status, doc))
    ids.append(doc["id"])
    wait_until(lambda: heartbeated(base, ids[-1]), 30, "a heartbeat of " + ids[-1])
    return ids, ["conf-1"]


def heartbeated(base, iid):
    status, doc = http("GET", "%s/v1/instances/%s" % (base, iid))
    return status == 200 and any(a.get("heartbeat_ms") and "progress" in a
                                 for a in doc["attempts"])


def write_config(path, instance_ids, order_ids):
    """Dictionaries of known ids for the path parameters (half the time a known one)."""
    def values(vals):
        return "[" + ", ".join(json.dumps(v) for v in vals) + "]"
    with open(path, "w") as f:
        f.write("[dictionaries]\n")
        f.write("instances = { values = %s }\n" % values(instance_ids))
        f.write("orders = { values = %s }\n" % values(order_ids))
        f.write("workflows = { values = %s }\n\n" % values(
            ["order_create", "order_cancel", "demo_order_test", "example.wait_reminder",
             "conf_heartbeat"]))
        f.write('[parameters]\n"path.name" = { dictionary = "workflows", probability = 0.5 }\n\n')
        for regex, dictionary in (("^/v1/instances/", "instances"), ("^/v1/orders/", "orders")):
            f.write("[[operations]]\ninclude-path-regex = %s\n" % json.dumps(regex))
            f.write('parameters = { "path.id" = { dictionary = "%s", probability = 0.5 } }\n\n'
                    % dictionary)


def documented_operations(base, path):
    """The operations of the document; the one sagad serves must be the file, byte for byte
    (schemathesis reads the file: it does not test the route its schema came from)."""
    with open(path, "rb") as f:
        text = f.read()
    with urllib.request.urlopen(base + "/v1/openapi.json", timeout=30) as r:
        served = r.read()
    (ok if served == text else ko)("GET /v1/openapi.json serves gateway/openapi.json")
    doc = json.loads(text)
    ops = set()
    for path, item in doc["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "delete", "patch", "head", "options"):
                ops.add("%s %s" % (method.upper(), path))
    return ops


def tally_junit(path, ops):
    """One test per operation from schemathesis' JUnit report; every documented operation
    must have been exercised."""
    tree = ET.parse(path)
    seen = set()
    for case in tree.iter("testcase"):
        name = case.get("name", "")
        seen.add(name)
        bad = case.find("failure") is not None or case.find("error") is not None
        if bad:
            detail = ""
            for el in list(case.iter("failure")) + list(case.iter("error")):
                detail += (el.get("message") or "") + " " + (el.text or "")[:2000]
            ko("%s: %s" % (name, detail.strip()[:3000]))
        elif case.find("skipped") is not None:
            ko("%s: skipped (not exercised)" % name)
        else:
            ok(name)
    for op in sorted(ops - seen):
        ko("%s: documented but never exercised" % op)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--examples", type=int, default=50, help="generated cases per operation and phase")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1, 2**31)
    print("seed %d (rerun with --seed %d)" % (seed, seed))
    venv = os.environ.get("SAGAD_SCHEMATHESIS_VENV", "~/.cache/sagad/schemathesis-venv")
    st = os.environ.get("SCHEMATHESIS") or os.path.join(os.path.expanduser(venv), "bin",
                                                         "schemathesis")
    sagad = os.path.join(ROOT, args.build, "bin", "sagad")
    if not os.access(st, os.X_OK) or not os.access(sagad, os.X_OK):
        ko("needs %s and %s (run scripts/deps.sh test and make)" % (st, sagad))
        print("%d passed, %d failed" % (passed, failed))
        return 1
    tmp = tempfile.mkdtemp(prefix="sg_openapi")
    # The shipped workflows and one of the test's own.
    workflows = os.path.join(tmp, "workflows")
    shutil.copytree(os.path.join(ROOT, "workflows"), workflows)
    with open(os.path.join(workflows, "conf_heartbeat.yaml"), "w") as f:
        f.write(HEARTBEAT_YAML)
    log_path = os.path.join(tmp, "sagad.log")
    log = open(log_path, "w")
    # Port 0: the kernel picks a free one, and sagad logs it.
    proc = subprocess.Popen(
        [sagad, "--workflows", workflows, "--db", os.path.join(tmp, "sagad.db"),
         "--seed", os.path.join(ROOT, "activities/seed/shop.json"), "--test-activities",
         "--listen", "127.0.0.1:0", "--sync", "normal"],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        wait_until(lambda: listening_port(log_path) is not None or proc.poll() is not None, 20,
                   "sagad to listen")
        port = listening_port(log_path)
        if port is None:
            raise RuntimeError("sagad exited (%s) before listening" % proc.poll())
        base = "http://127.0.0.1:%d" % port
        wait_until(lambda: http("GET", base + "/readyz")[0] == 200, 20, "sagad to be ready")
        instance_ids, order_ids = make_fixtures(base)
        ok("sagad ready, fixtures made (%d instances, %d order)" % (len(instance_ids), len(order_ids)))
        spec = os.path.join(ROOT, "gateway", "openapi.json")
        ops = documented_operations(base, spec)
        config = os.path.join(tmp, "schemathesis.toml")
        write_config(config, instance_ids, order_ids)
        junit = os.path.join(tmp, "junit.xml")
        cmd = [st, "--config-file", config, "run", spec, "--url", base,
               "--checks", CHECKS, "--phases", "examples,coverage,fuzzing,stateful",
               "--max-examples", str(args.examples), "--seed", str(seed), "--workers", "2",
               "--request-timeout", "20", "--report", "junit", "--report-junit-path", junit,
               "--no-color"]
        t0 = time.monotonic()
        run = subprocess.run(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, timeout=600)
        print(run.stdout[-6000:] if run.returncode != 0 else run.stdout[-1500:])
        print("schemathesis: exit %d in %.1f s" % (run.returncode, time.monotonic() - t0))
        if os.path.exists(junit):
            tally_junit(junit, ops)
        else:
            ko("schemathesis wrote no report (exit %d)" % run.returncode)
        if run.returncode != 0 and failed == 0:
            ko("schemathesis exited %d" % run.returncode)
        if proc.poll() is None:
            ok("sagad still running after the run")
        else:
            ko("sagad died during the run (exit %s)" % proc.returncode)
    except Exception as e:  # a broken setup is a failure, not a crash of the suite
        ko("setup: %s" % e)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)
                (ok if rc == 0 else ko)("sagad stopped on SIGTERM (exit %d)" % rc)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                ko("sagad did not stop within 30 s of SIGTERM")
        log.close()
        if failed:
            print("sagad log (last lines):")
            with open(os.path.join(tmp, "sagad.log")) as f:
                print("".join(f.readlines()[-20:]))
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
