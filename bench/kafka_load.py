#!/usr/bin/env python3
"""Load for bench/kafka.sh: starts N sagas through sagad's REST API, keeping at most C of
them unfinished, and reports throughput and latency.

Unfinished = started by us minus finished since we began, the latter read from GET /metrics
(sagad_sagas_finished_total) every few milliseconds, so the load itself costs sagad little.
Latency is sagad's own: from the start being durable to the end being durable
(instances.updated_ms - created_ms, read from its database read-only afterwards).

Prints one line: "SAGAS_PER_S P50_MS P99_MS COMPLETED OTHER". Exit 1 when the sagas did not
all end within the timeout. Python 3 standard library only. Not a test.

usage: kafka_load.py URL DB WORKFLOW TAG N C [TIMEOUT_S]
"""
import http.client
import json
import sqlite3
import sys
import threading
import time
import urllib.parse

POLL_S = 0.005
CONNECTIONS = 8


def finished_total(conn):
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    body = r.read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith("sagad_sagas_finished_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main():
    url, db, workflow, tag = sys.argv[1:5]
    n, c = int(sys.argv[5]), int(sys.argv[6])
    timeout = float(sys.argv[7]) if len(sys.argv) > 7 else 300.0
    u = urllib.parse.urlsplit(url)
    host, port = u.hostname, u.port
    mon = http.client.HTTPConnection(host, port, timeout=30)
    base = finished_total(mon)
    state = {"issued": 0, "finished": 0.0, "failed": None}
    cv = threading.Condition()

    def starter():
        conn = http.client.HTTPConnection(host, port, timeout=30)
        while True:
            with cv:
                while state["issued"] < n and state["issued"] - state["finished"] >= c:
                    cv.wait(0.05)
                if state["issued"] >= n or state["failed"]:
                    return
                i = state["issued"]
                state["issued"] += 1
            body = json.dumps({"order_id": "%s-%d" % (tag, i)})
            try:
                conn.request("POST", "/v1/workflows/%s/instances" % workflow, body=body,
                             headers={"Content-Type": "application/json",
                                      "Idempotency-Key": "%s-%d" % (tag, i)})
                r = conn.getresponse()
                r.read()
                if r.status not in (200, 201, 202):
                    raise RuntimeError("start: HTTP %d" % r.status)
            except (OSError, http.client.HTTPException, RuntimeError) as e:
                with cv:
                    state["failed"] = str(e)
                    cv.notify_all()
                return

    t0 = time.monotonic()
    threads = [threading.Thread(target=starter) for _ in range(min(CONNECTIONS, c))]
    for t in threads:
        t.start()
    end = t0 + timeout
    while time.monotonic() < end:
        f = finished_total(mon) - base
        with cv:
            state["finished"] = f
            cv.notify_all()
            if state["failed"] or f >= n:
                break
        time.sleep(POLL_S)
    wall = time.monotonic() - t0
    for t in threads:
        t.join()
    if state["failed"] or state["finished"] < n:
        print("load: %s" % (state["failed"] or "only %d of %d sagas ended within %.0f s"
                            % (state["finished"], n, timeout)), file=sys.stderr)
        return 1
    con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=30)
    rows = con.execute("SELECT updated_ms - created_ms, status FROM instances WHERE "
                       "idempotency_key LIKE ?", (tag + "-%",)).fetchall()
    con.close()
    lat = sorted(r[0] for r in rows)
    done = sum(1 for r in rows if r[1] == "COMPLETED")

    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else -1
    print("%.0f %d %d %d %d" % (n / wall, pct(0.50), pct(0.99), done, len(rows) - done))
    return 0


if __name__ == "__main__":
    sys.exit(main())
