#!/usr/bin/env python3
"""End to end: every outcome of the shop's sagas through a real sagad (REST over a
loopback socket, embedded services, SQLite files), checked in the services' OWN
databases afterwards, not in what sagad says.

  completed          stock down by the ordered quantities, one charge of the total,
                     one confirmation, order approved
  out of stock       nothing reserved, no money moved, a rejection notice, order rejected
  card declined      stock returned, a decline but no charge, a rejection notice
  placed, cancelled  stock returned, the charge refunded once, order cancelled, a
                     cancellation notice; a second cancel changes nothing
  replayed start     the same Idempotency-Key gives the same saga, one order

With --conservation N it then runs N random orders (with cancels) under injected
transient failures and lost replies, and checks that nothing leaked:
stock + reserved = supplied for every product, and charges - refunds = the totals of the
orders that stand, per order.

Usage: orders_e2e.py --build DIR [--port P] [--conservation N] [--seed S]
Prints "N passed, N failed".
"""
import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import shop  # noqa: E402

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("ok   " + what)
    else:
        failed += 1
        print("FAIL " + what)


def one(conn, sql, *args):
    return conn.execute(sql, args).fetchone()


def stock_of(data_dir, sku):
    with shop.db(data_dir, "inventory") as c:
        return one(c, "SELECT stock FROM products WHERE sku = ?", sku)[0]


def ledger(data_dir, order_id):
    with shop.db(data_dir, "payment") as c:
        return dict(c.execute("SELECT kind, sum(amount) FROM ledger WHERE order_id = ? GROUP BY kind",
                              (order_id,)).fetchall())


def order_status(data_dir, order_id):
    with shop.db(data_dir, "order") as c:
        row = one(c, "SELECT status FROM orders WHERE order_id = ?", order_id)
    return row[0] if row else None


def sent(data_dir, order_id):
    """{template: deliveries sent} for an order."""
    with shop.db(data_dir, "notification") as c:
        return dict(c.execute("SELECT template, count(*) FROM deliveries WHERE order_id = ?"
                              " AND status = 'sent' GROUP BY template", (order_id,)).fetchall())


def channels(customer):
    return {"cus_alice": 2, "cus_bob": 2, "cus_carol": 1, "cus_dan": 1, "cus_erin": 1, "cus_frank": 1}[customer]


def run_one(base, workflow, inp, key):
    iid = shop.start(base, workflow, inp, key)
    return iid, shop.wait_all(base, [iid], timeout=60)[iid]


def outcomes(base, data_dir):
    rng = shop.rng(7)
    before = {sku: stock_of(data_dir, sku) for sku in shop.IN_STOCK}

    # completed
    o = shop.make_order(rng, "e2e-ok", "ok")
    iid, inst = run_one(base, "order_create", o, "k-ok")
    check(inst["status"] == "COMPLETED", "completed: saga COMPLETED")
    check(all(stock_of(data_dir, l["sku"]) == before[l["sku"]] - l["qty"] for l in o["items"]),
          "completed: stock decremented by the ordered quantities")
    check(ledger(data_dir, "e2e-ok") == {"charge": o["total"]}, "completed: one charge of the total")
    check(sent(data_dir, "e2e-ok") == {"order_confirmed": channels(o["customer_id"])},
          "completed: one confirmation per channel of the customer")
    check(order_status(data_dir, "e2e-ok") == "approved", "completed: order approved")
    status, ev = shop.http("GET", "%s/v1/events?correlation_id=%s" % (base, iid))
    types = sorted({e["type"] for e in (ev or {}).get("items", [])}) if status == 200 else []
    check({"order.created", "inventory.reserved", "payment.processed", "order.completed"} <= set(types),
          "completed: domain events in the log (%s)" % ", ".join(types))

    # the same start again: same saga, nothing new
    iid2 = shop.start(base, "order_create", o, "k-ok")
    check(iid2 == iid, "replayed start: same instance for the same Idempotency-Key")
    check(ledger(data_dir, "e2e-ok") == {"charge": o["total"]}, "replayed start: still one charge")

    # out of stock
    snap = {sku: stock_of(data_dir, sku) for sku in shop.IN_STOCK}
    o = shop.make_order(rng, "e2e-oos", "out_of_stock")
    iid, inst = run_one(base, "order_create", o, "k-oos")
    check(inst["status"] == "COMPENSATED", "out of stock: saga COMPENSATED")
    check({sku: stock_of(data_dir, sku) for sku in shop.IN_STOCK} == snap, "out of stock: no stock taken")
    check(ledger(data_dir, "e2e-oos") == {}, "out of stock: no money moved")
    check(sent(data_dir, "e2e-oos") == {"order_rejected": channels(o["customer_id"])},
          "out of stock: one rejection notice, no confirmation")
    check(order_status(data_dir, "e2e-oos") == "rejected", "out of stock: order rejected")

    # declined: the stock was reserved, then given back
    snap = {sku: stock_of(data_dir, sku) for sku in shop.IN_STOCK}
    o = shop.make_order(rng, "e2e-declined", "declined")
    iid, inst = run_one(base, "order_create", o, "k-declined")
    check(inst["status"] == "COMPENSATED", "declined: saga COMPENSATED")
    check({sku: stock_of(data_dir, sku) for sku in shop.IN_STOCK} == snap, "declined: stock returned")
    led = ledger(data_dir, "e2e-declined")
    check("charge" not in led and "refund" not in led and "decline" in led, "declined: a decline, no charge")
    check(sent(data_dir, "e2e-declined") == {"order_rejected": 1}, "declined: one rejection notice")
    check(order_status(data_dir, "e2e-declined") == "rejected", "declined: order rejected")
    story = shop.story(base, iid)
    check(story[-3:] == ["undo reserve_inventory", "undo create_order", "undo prepare_notice"],
          "declined: compensations in reverse order (%s)" % " -> ".join(story))

    # placed, then cancelled; then cancelled again
    snap = {sku: stock_of(data_dir, sku) for sku in shop.IN_STOCK}
    o = shop.make_order(rng, "e2e-cancel", "ok")
    iid, inst = run_one(base, "order_create", o, "k-cancel")
    check(inst["status"] == "COMPLETED", "cancel: the order saga completed first")
    cancel = {"order_id": "e2e-cancel", "reason": "customer_request"}
    cid, cinst = run_one(base, "order_cancel", cancel, "k-cancel-1")
    check(cinst["status"] == "COMPLETED", "cancel: order_cancel COMPLETED")
    check({sku: stock_of(data_dir, sku) for sku in shop.IN_STOCK} == snap, "cancel: stock returned")
    check(ledger(data_dir, "e2e-cancel") == {"charge": o["total"], "refund": o["total"]},
          "cancel: the charge refunded in full, once")
    check(order_status(data_dir, "e2e-cancel") == "cancelled", "cancel: order cancelled")
    check(sent(data_dir, "e2e-cancel").get("order_cancelled") == channels(o["customer_id"]),
          "cancel: a cancellation notice")
    cid2, cinst2 = run_one(base, "order_cancel", cancel, "k-cancel-2")
    check(cinst2["status"] in ("COMPENSATED", "FAILED"), "cancel again: refused (%s)" % cinst2["status"])
    check(ledger(data_dir, "e2e-cancel") == {"charge": o["total"], "refund": o["total"]},
          "cancel again: no second refund")
    check({sku: stock_of(data_dir, sku) for sku in shop.IN_STOCK} == snap, "cancel again: stock unchanged")


def conservation(base, data_dir, n, seed):
    rng = shop.rng(seed)
    kinds = ["ok"] * 70 + ["out_of_stock"] * 10 + ["declined"] * 8 + ["blocked"] * 4 + ["cancel"] * 8
    placed = []
    for i in range(n):
        kind = rng.choice(kinds)
        o = shop.make_order(rng, "c-%05d" % i, "ok" if kind == "cancel" else kind)
        placed.append((kind, o, shop.start(base, "order_create", o, "c-%05d" % i)))
    done = shop.wait_all(base, [i for _, _, i in placed], timeout=600)
    cancels = [shop.start(base, "order_cancel", {"order_id": o["order_id"], "reason": "customer_request"},
                          "cc-" + o["order_id"])
               for kind, o, iid in placed if kind == "cancel" and done[iid]["status"] == "COMPLETED"]
    cdone = shop.wait_all(base, cancels, timeout=600)
    statuses = {}
    for d in list(done.values()) + list(cdone.values()):
        statuses[d["status"]] = statuses.get(d["status"], 0) + 1
    print("   %d orders, %d cancels: %s" % (n, len(cancels), statuses))
    check(set(statuses) <= {"COMPLETED", "COMPENSATED"}, "conservation: every saga completed or compensated")

    with shop.db(data_dir, "inventory") as c:
        bad = c.execute("SELECT p.sku, p.stock, p.supplied, coalesce(sum(l.qty), 0) FROM products p"
                        " LEFT JOIN reservation_lines l ON l.sku = p.sku AND l.reservation_id IN"
                        " (SELECT reservation_id FROM reservations WHERE status = 'held')"
                        " GROUP BY p.sku HAVING p.stock + coalesce(sum(l.qty), 0) != p.supplied").fetchall()
    check(bad == [], "conservation: stock + reserved = supplied for every product %s" % (bad or ""))
    with shop.db(data_dir, "order") as c:
        totals = dict(c.execute("SELECT order_id, CASE status WHEN 'approved' THEN total ELSE 0 END"
                                " FROM orders").fetchall())
    with shop.db(data_dir, "payment") as c:
        net = dict(c.execute("SELECT order_id, sum(CASE kind WHEN 'charge' THEN amount WHEN 'refund'"
                             " THEN -amount ELSE 0 END) FROM ledger GROUP BY order_id").fetchall())
    wrong = [o for o in set(totals) | set(net) if net.get(o, 0) != totals.get(o, 0)]
    check(wrong == [], "conservation: charges - refunds = total of each standing order %s" % wrong[:5])
    with shop.db(data_dir, "notification") as c:
        dup = c.execute("SELECT idempotency_key, channel, count(*) FROM deliveries WHERE status = 'sent'"
                        " GROUP BY idempotency_key, channel HAVING count(*) > 1").fetchall()
    check(dup == [], "conservation: no message sent twice on one channel")
    with shop.db(data_dir, "inventory") as c:
        held = dict(c.execute("SELECT order_id, count(*) FROM reservations WHERE status = 'held'"
                              " GROUP BY order_id").fetchall())
    standing = {o for o, t in totals.items() if t > 0}
    check(set(held) == standing and all(v == 1 for v in held.values()),
          "conservation: exactly the standing orders hold one reservation")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--port", type=int, default=18181)
    ap.add_argument("--conservation", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="sagad-e2e-")
    try:
        sagad = shop.Sagad(a.build, os.path.join(tmp, "plain"), a.port)
        try:
            outcomes(sagad.base, sagad.data_dir)
        finally:
            check(sagad.stop() == 0, "sagad stopped cleanly")
        if a.conservation:
            chaos = ("inventory.error_rate=0.05,inventory.lost_reply_rate=0.05,payment.error_rate=0.05,"
                     "payment.lost_reply_rate=0.05,order.lost_reply_rate=0.03,"
                     "notification.provider_failure_rate=0.1")
            sagad = shop.Sagad(a.build, os.path.join(tmp, "chaos"), a.port + 1, chaos=chaos)
            try:
                conservation(sagad.base, sagad.data_dir, a.conservation, a.seed)
            finally:
                check(sagad.stop() == 0, "sagad (chaos) stopped cleanly")
    finally:
        if failed == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept %s for a look" % tmp)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
