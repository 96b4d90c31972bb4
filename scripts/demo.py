#!/usr/bin/env python3
"""The shop demo (`make demo`): sagad with its embedded services on the shipped
workflows, a mix of orders, and proof from the services' own databases that nothing
leaked.

  1. starts sagad on a fresh folder (build/run/), seeded with activities/seed/shop.json;
  2. places orders: most succeed, some are out of stock, some declined, some cancelled
     after they were placed;
  3. waits for every saga, prints a summary per outcome with the steps and
     compensations of one example each;
  4. checks the books: stock + reserved = stock supplied, charges - refunds = totals of
     the orders that stand, one confirmation per completed order, one notice per failed
     or cancelled one;
  5. writes the graph of one compensated instance as SVG, stops sagad by its pid.

Usage: scripts/demo.py [BUILD_DIR]   (port: SAGAD_DEMO_PORT, default 18080)
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shop  # noqa: E402

MIX = ["ok"] * 14 + ["out_of_stock"] * 3 + ["declined"] * 2 + ["blocked"] + ["cancel"] * 3


def money(cents):
    return "%d.%02d EUR" % (cents // 100, cents % 100)


def place_orders(base, rng):
    """[(kind, order, instance id)] for the mix, in a shuffled order."""
    kinds = MIX[:]
    rng.shuffle(kinds)
    placed = []
    for i, kind in enumerate(kinds, 1):
        order = shop.make_order(rng, "ord-%03d" % i, "ok" if kind == "cancel" else kind)
        iid = shop.start(base, "order_create", order, "demo-" + order["order_id"])
        placed.append((kind, order, iid))
    return placed


def cancel_some(base, placed, done):
    """Starts order_cancel for the orders meant to be cancelled (once they completed)."""
    cancels = []
    for kind, order, iid in placed:
        if kind == "cancel" and done[iid]["status"] == "COMPLETED":
            cid = shop.start(base, "order_cancel",
                             {"order_id": order["order_id"], "reason": "customer_request",
                              "requested_by": order["customer_id"]},
                             "demo-cancel-" + order["order_id"])
            cancels.append((order, cid))
    return cancels


def outcome_of(kind, inst):
    status = inst["status"]
    if status != "COMPENSATED":
        return status.lower()
    return {"out_of_stock": "out of stock -> compensated",
            "declined": "card declined -> compensated",
            "blocked": "card blocked -> compensated"}.get(kind, "compensated")


def summary(base, placed, done, cancels, cdone):
    rows = {}
    for kind, order, iid in placed:
        name = outcome_of(kind, done[iid])
        if kind == "cancel" and name == "completed":
            continue  # shown with its cancellation below
        rows.setdefault(name, []).append((order["order_id"], iid))
    for order, cid in cancels:
        rows.setdefault("placed, then cancelled", []).append((order["order_id"], cid))
    print("%-30s %5s  %s" % ("outcome", "count", "example: what ran, in order"))
    print("-" * 100)
    for name in sorted(rows, key=lambda n: -len(rows[n])):
        oid, iid = rows[name][0]
        story = shop.story(base, iid)
        print("%-30s %5d  %s (saga %s)" % (name, len(rows[name]), oid, iid))
        print("%-30s %5s    %s" % ("", "", " -> ".join(story)))
    print()


def books(data_dir, placed, done, cancels, cdone):
    """Prints the totals and returns the list of problems (empty when the books balance)."""
    problems = []
    inv, pay, note, ords = (shop.db(data_dir, s) for s in ("inventory", "payment", "notification", "order"))
    stock, supplied = inv.execute("SELECT sum(stock), sum(supplied) FROM products").fetchone()
    held = inv.execute("SELECT coalesce(sum(l.qty), 0) FROM reservation_lines l JOIN reservations r"
                       " USING(reservation_id) WHERE r.status = 'held'").fetchone()[0]
    charged = pay.execute("SELECT coalesce(sum(amount), 0) FROM ledger WHERE kind = 'charge'").fetchone()[0]
    refunded = pay.execute("SELECT coalesce(sum(amount), 0) FROM ledger WHERE kind = 'refund'").fetchone()[0]
    standing = ords.execute("SELECT coalesce(sum(total), 0), count(*) FROM orders WHERE status = 'approved'").fetchone()
    statuses = dict(ords.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall())
    sent = dict(note.execute("SELECT template, count(DISTINCT order_id) FROM deliveries WHERE status = 'sent'"
                             " GROUP BY template").fetchall())
    print("the books (from the services' own databases):")
    print("  inventory     stock %d + reserved by standing orders %d = %d; supplied %d  %s"
          % (stock, held, stock + held, supplied, "ok" if stock + held == supplied else "LEAK"))
    print("  payment       charged %s - refunded %s = %s; orders standing: %d for %s  %s"
          % (money(charged), money(refunded), money(charged - refunded), standing[1], money(standing[0]),
             "ok" if charged - refunded == standing[0] else "MISMATCH"))
    print("  orders        %s" % ", ".join("%s %d" % kv for kv in sorted(statuses.items())))
    print("  notifications %s" % ", ".join("%s to %d orders" % kv for kv in sorted(sent.items())))
    if stock + held != supplied:
        problems.append("stock + reserved != supplied")
    if charged - refunded != standing[0]:
        problems.append("charges - refunds != totals of standing orders")
    completed = sum(1 for k, o, i in placed if done[i]["status"] == "COMPLETED")
    if sent.get("order_confirmed", 0) != completed:
        problems.append("%d confirmations for %d completed orders" % (sent.get("order_confirmed", 0), completed))
    compensated = sum(1 for k, o, i in placed if done[i]["status"] == "COMPENSATED")
    if sent.get("order_rejected", 0) != compensated:
        problems.append("%d rejection notices for %d failed orders" % (sent.get("order_rejected", 0), compensated))
    cancelled = sum(1 for o, c in cancels if cdone[c]["status"] == "COMPLETED")
    if sent.get("order_cancelled", 0) != cancelled:
        problems.append("%d cancellation notices for %d cancelled orders" % (sent.get("order_cancelled", 0), cancelled))
    for c in (inv, pay, note, ords):
        c.close()
    print()
    return problems


def main():
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and sys.argv[1].startswith("-")):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(0 if sys.argv[1] in ("-h", "--help") else 2)
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    out = os.path.join(build, "run")
    port = int(os.environ.get("SAGAD_DEMO_PORT", "18080"))
    shutil.rmtree(out, ignore_errors=True)
    rng = shop.rng(2026)
    print("== sagad with the embedded services (order, inventory, payment, notification)")
    print("   data in %s/ ; seeded from activities/seed/shop.json\n" % out)
    sagad = shop.Sagad(build, out, port)
    try:
        placed = place_orders(sagad.base, rng)
        print("placed %d orders; waiting for their sagas ..." % len(placed))
        done = shop.wait_all(sagad.base, [i for _, _, i in placed])
        cancels = cancel_some(sagad.base, placed, done)
        cdone = shop.wait_all(sagad.base, [c for _, c in cancels])
        print("cancelled %d of them after they were placed\n" % len(cancels))
        summary(sagad.base, placed, done, cancels, cdone)
        problems = books(out, placed, done, cancels, cdone)
        comp = next((i for k, o, i in placed if done[i]["status"] == "COMPENSATED"), None)
        if comp is not None:
            svg = os.path.join(out, "compensated-%s.svg" % comp)
            with open(svg, "wb") as f:
                f.write(shop.fetch_raw("%s/v1/instances/%s/graph?format=svg" % (sagad.base, comp)))
            print("graph of compensated saga %s: %s" % (comp, svg))
        status, body = shop.http("GET", "%s/v1/events?limit=1000" % sagad.base)
        if status == 200:
            types = {}
            for e in body.get("items", []):
                types[e["type"]] = types.get(e["type"], 0) + 1
            print("domain events in the log: %s" % ", ".join("%s %d" % kv for kv in sorted(types.items())))
    finally:
        rc = sagad.stop()
    print("sagad stopped (exit %d). Databases and log: %s/" % (rc, out))
    if problems:
        print("PROBLEMS: " + "; ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
