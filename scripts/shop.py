"""The shop, seen from outside: start sagad on the shipped workflows with the embedded
services, place orders over REST, wait for them, and read the services' own databases.

Shared by the demo (scripts/demo.py) and the end-to-end tests (tests/e2e/). Standard
library only, so `make demo` needs nothing but python3.
"""
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(ROOT, "activities", "seed", "shop.json")
TERMINAL = {"COMPLETED", "COMPENSATED", "FAILED", "COMPENSATION_FAILED"}


# ---- sagad as a child process -----------------------------------------------------

class Sagad:
    """One sagad process, started on a fresh data folder and stopped by its pid."""

    def __init__(self, build, data_dir, port, chaos=None, extra=(), seed=True):
        self.build, self.data_dir, self.port = build, data_dir, port
        self.base = "http://127.0.0.1:%d" % port
        os.makedirs(data_dir, exist_ok=True)
        args = [os.path.join(build, "bin", "sagad"), "--workflows", os.path.join(ROOT, "workflows"),
                "--db", os.path.join(data_dir, "sagad.db"), "--listen", "127.0.0.1:%d" % port,
                "--log-level", "warn"]
        if seed:
            args += ["--seed", SEED]
        if chaos:
            args += ["--chaos", chaos]
        args += list(extra)
        self.log = open(os.path.join(data_dir, "sagad.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("sagad exited with %s; see %s/sagad.log" % (self.proc.returncode, data_dir))
            try:
                if http("GET", self.base + "/healthz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("sagad did not answer /healthz within 30 s")
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def http(method, url, body=None, headers=None, timeout=10):
    """(status, parsed JSON body or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, None


# ---- orders ------------------------------------------------------------------------

CUSTOMERS = {  # customer -> (card token, email); cards and contacts are in the seed
    "cus_alice": ("tok_visa_alice", "alice@example.com"),
    "cus_bob": ("tok_visa_bob", "bob@example.com"),
    "cus_carol": ("tok_mc_carol", "carol@example.com"),
    "cus_dan": ("tok_visa_dan", None),
}
IN_STOCK = {"BOOK-001": 2990, "BOOK-002": 4500, "MUG-001": 1200, "TSHIRT-M": 1900,
            "TSHIRT-L": 1900, "STICKER-1": 300, "PEN-001": 250, "BAG-001": 1800}


def make_order(rng, order_id, kind="ok"):
    """An order_create input. kind: ok, out_of_stock, declined (low funds), blocked."""
    customer = rng.choice(sorted(CUSTOMERS))
    token, email = CUSTOMERS[customer]
    lines = []
    for sku in rng.sample(sorted(IN_STOCK), rng.randint(1, 3)):
        lines.append({"sku": sku, "qty": rng.randint(1, 2), "price": IN_STOCK[sku]})
    if kind == "out_of_stock":
        lines.append({"sku": "GONE-001", "qty": 1, "price": 999})
    elif kind == "declined":  # Erin's card has a 20.00 limit
        customer, token, email = "cus_erin", "tok_low_funds", "erin@example.com"
        lines = [{"sku": "BOOK-002", "qty": 1, "price": 4500}]
    elif kind == "blocked":
        customer, token, email = "cus_frank", "tok_blocked", "frank@example.com"
    order = {"order_id": order_id, "customer_id": customer, "items": lines,
             "payment": {"card_token": token},
             "total": sum(l["qty"] * l["price"] for l in lines), "currency": "EUR"}
    if email:
        order["email"] = email
    return order


def start(base, workflow, inp, key):
    status, body = http("POST", "%s/v1/workflows/%s/instances" % (base, workflow), inp,
                        {"Idempotency-Key": key})
    if status not in (200, 201):
        raise RuntimeError("start %s: HTTP %d %s" % (workflow, status, body))
    return body["id"]


def wait_all(base, ids, timeout=120.0):
    """{id: instance JSON} once every instance has ended (raises after timeout)."""
    done = {}
    deadline = time.monotonic() + timeout
    pending = list(ids)
    while pending:
        still = []
        for iid in pending:
            status, body = http("GET", "%s/v1/instances/%s" % (base, iid))
            if status == 200 and body.get("status") in TERMINAL:
                done[iid] = body
            else:
                still.append(iid)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise RuntimeError("%d sagas still running after %.0f s" % (len(pending), timeout))
            time.sleep(0.1)
    return done


def history(base, iid):
    status, body = http("GET", "%s/v1/instances/%s/history" % (base, iid))
    return body.get("events", body.get("items", [])) if status == 200 else []


def story(base, iid):
    """The steps and compensations that ran, in order: ['create_order', 'x reserve_inventory
    (inventory.out_of_stock)', 'undo create_order', ...]."""
    out = []
    for h in history(base, iid):
        t, step = h.get("type"), h.get("step")
        if t == "step_completed":
            out.append("%s" % step)
        elif t == "step_failed":
            code = (h.get("detail") or {}).get("code")
            out.append("x %s (%s)" % (step, code))
        elif t == "step_compensated":
            out.append("undo %s" % step)
        elif t == "compensation_failed":
            out.append("x undo %s" % step)
    return out


# ---- the services' own databases ---------------------------------------------------

def db(data_dir, service):
    path = os.path.join(data_dir, service + ".db")
    return sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)


def seed_stock():
    with open(SEED) as f:
        return {p["sku"]: p["stock"] for p in json.load(f)["inventory"]["products"]}


def rng(seed):
    return random.Random(seed)


def fetch_raw(url, timeout=10):
    """The body of a GET as bytes (SVG, DOT, metrics text)."""
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()
