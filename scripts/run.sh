#!/usr/bin/env bash
# The main job (`make run` / `make demo`), on the embedded default (no broker):
#  1. checks every shipped saga and shows what the order saga does when a step fails;
#  2. runs the shop (scripts/demo.py): sagad with its embedded order, inventory, payment
#     and notification services on the shipped workflows, a mix of orders (most succeed,
#     some out of stock, some declined, some cancelled after placement), a summary per
#     outcome, the books that prove nothing leaked, and the graph of a compensated saga;
#  3. leaves the databases, the log and the graphs in build/run/ (sagad is stopped by pid).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
ctl=$build/bin/sagactl

echo "== 1. sagactl validate workflows"
"$ctl" validate workflows/*.yaml workflows/examples/*.yaml
echo
echo "== sagactl check workflows/order_create.yaml  (what runs when a step fails)"
"$ctl" check workflows/order_create.yaml
echo

echo "== 2. the shop"
python3 scripts/demo.py "$build"
for f in workflows/*.yaml; do
  "$ctl" graph "$f" --format svg -o "$build/run/$(basename "${f%.yaml}").svg"
done
echo "== 3. graphs of the shipped workflows: $build/run/*.svg"
