#!/usr/bin/env python3
"""The shop's order saga over Kafka, with the services in saga-worker processes.

A real broker (scripts/kafka.sh), `sagad --transport kafka` seeded with
activities/seed/shop.json, one saga-worker serving order, inventory and notification,
and three payment workers, all on one data folder (the services' SQLite files are shared
by the workers of a queue). 60 orders (ok, out of stock, declined); once charges are
under way one payment worker is killed with kill -9 and another one added. Then:
every saga ends as its order says, and the services' own databases balance: stock +
reserved = supplied, charges - refunds = the total of each standing order, one charge
per completed order, no message sent twice on a channel.

Prints "ok:"/"FAIL:" lines and "N passed, N failed". Every process it starts is stopped
by its pid; loopback only; bounded waits on conditions.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "scripts"))
import kafka_e2e as ke  # noqa: E402  (processes, ports, checks)
import shop  # noqa: E402  (orders, the services' databases)

EXPECTED = {"ok": "COMPLETED", "out_of_stock": "COMPENSATED", "declined": "COMPENSATED"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--orders", type=int, default=60)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, ke.on_signal)
    signal.signal(signal.SIGINT, ke.on_signal)
    tmp = tempfile.mkdtemp(prefix="sg_kafka_orders")
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    binp = lambda name: os.path.join(REPO, args.build, "bin", name)  # noqa: E731
    t0 = time.monotonic()
    try:
        ke.broker_dir = os.path.join(tmp, "kafka")
        port = ke.free_port_pair()
        r = subprocess.run([ke.KAFKA_SH, "start", "--dir", ke.broker_dir, "--port", str(port)],
                           capture_output=True, text=True, timeout=300)
        broker = r.stdout.strip()
        if not ke.check("broker up on 127.0.0.1:%d" % port, r.returncode == 0, r.stderr[-500:]):
            return
        rest = ke.free_port_pair()
        sagad = ke.Proc("sagad", [
            binp("sagad"), "--workflows", os.path.join(REPO, "workflows"),
            "--db", os.path.join(tmp, "sagad.db"), "--data-dir", data,
            "--seed", shop.SEED, "--listen", "127.0.0.1:%d" % rest,
            "--transport", "kafka", "--brokers", broker], os.path.join(tmp, "sagad.log"))
        if not ke.check("sagad --transport kafka --seed starts",
                        ke.wait_until(lambda: ke.healthy(rest) or not sagad.alive(), 60)
                        and sagad.alive(), sagad.log_text()[-1500:]):
            return
        base = "http://127.0.0.1:%d" % rest

        def worker(name, queues):
            return ke.Proc(name, [binp("saga-worker"), "--queue", queues, "--brokers", broker,
                                  "--data-dir", data, "--inflight", "4", "--worker-id", name],
                           os.path.join(tmp, name + ".log"))
        workers = {"shop": worker("shop", "order,inventory,notification")}
        for i in (1, 2, 3):
            workers["pay%d" % i] = worker("pay%d" % i, "payment")
        ke.check("workers join their groups",
                 ke.wait_until(lambda: all("assigned" in w.log_text()
                                           for w in workers.values()), 90, 0.1))

        rng = shop.rng(42)
        kinds = (["ok"] * 7 + ["out_of_stock", "declined", "ok"]) * (args.orders // 10)
        placed = []
        for i, kind in enumerate(kinds):
            o = shop.make_order(rng, "k-%03d" % i, kind)
            placed.append((kind, o, shop.start(base, "order_create", o, "k-%03d" % i)))
        charged = lambda: len(ke.query(os.path.join(data, "payment.db"),  # noqa: E731
                                       "SELECT 1 FROM ledger WHERE kind = 'charge'"))
        ke.check("charges under way before the kill", ke.wait_until(lambda: charged() >= 5, 120, 0.02))
        workers["pay1"].kill9()
        ke.log("   killed pay1 with kill -9 after %d charges" % charged())
        workers["pay4"] = worker("pay4", "payment")

        done = {}
        try:
            done = shop.wait_all(base, [i for _, _, i in placed], timeout=240)
        except RuntimeError as e:
            ke.log("   " + str(e))
        wrong = [(o["order_id"], done.get(i, {}).get("status"), EXPECTED[k])
                 for k, o, i in placed if done.get(i, {}).get("status") != EXPECTED[k]]
        ke.check("all %d order sagas end as their orders say over Kafka" % len(placed), not wrong,
                 "%d wrong, e.g. %s" % (len(wrong), wrong[:3]))

        inv = ke.query(os.path.join(data, "inventory.db"),
                       "SELECT count(*) FROM inventory_levels WHERE stock + reserved != supplied")
        ke.check("inventory: stock + reserved = supplied for every product", inv == [(0,)], str(inv))
        totals = dict(ke.query(os.path.join(data, "order.db"),
                               "SELECT order_id, CASE status WHEN 'approved' THEN total ELSE 0 END"
                               " FROM orders"))
        net = dict(ke.query(os.path.join(data, "payment.db"),
                            "SELECT order_id, sum(CASE kind WHEN 'charge' THEN amount"
                            " WHEN 'refund' THEN -amount ELSE 0 END) FROM ledger GROUP BY order_id"))
        bad = [o for o in set(totals) | set(net) if net.get(o, 0) != totals.get(o, 0)]
        ke.check("payment: charges - refunds = the total of each standing order", not bad, str(bad[:5]))
        charges = ke.query(os.path.join(data, "payment.db"),
                           "SELECT order_id FROM ledger WHERE kind = 'charge' GROUP BY order_id"
                           " HAVING count(*) > 1")
        ke.check("payment: at most one charge per order despite the kill", not charges, str(charges))
        dup = ke.query(os.path.join(data, "notification.db"),
                       "SELECT idempotency_key, channel FROM deliveries WHERE status = 'sent'"
                       " GROUP BY idempotency_key, channel HAVING count(*) > 1")
        ke.check("notification: no message sent twice on a channel", not dup, str(dup[:3]))

        for name, w in workers.items():
            if w.alive():
                rc = w.term()
                ke.check("%s exits 0 on SIGTERM" % name, rc == 0, str(rc))
        rc = sagad.term()
        ke.check("sagad exits 0 on SIGTERM", rc == 0, str(rc))
    except Exception as e:  # a broken setup is a failure, not a traceback
        ke.check("the test ran to its end", False, "%s: %s" % (type(e).__name__, e))
    finally:
        ke.cleanup()
        ke.log("   (total %.1f s; logs in %s)" % (time.monotonic() - t0, tmp))
        if ke.failed == 0:
            subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
    print("%d passed, %d failed" % (ke.passed, ke.failed))
    sys.exit(1 if ke.failed else 0)
