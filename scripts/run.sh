#!/usr/bin/env bash
# The main job (`make run` / `make demo`), on the embedded default (no broker):
#  1. checks every shipped saga and shows what the order saga does when a step fails;
#  2. starts sagad on the shipped workflows with the built-in test activities, runs a
#     few order-shaped sagas (some declined, so they compensate), and shows how each
#     ended, the audit trail of a compensated one, and its graph;
#  3. stops sagad (by its pid) and leaves the database and graphs in build/run/.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
ctl=$build/bin/sagactl
out=$build/run
port=${SAGAD_DEMO_PORT:-18080}
export SAGAD_URL=http://127.0.0.1:$port
rm -rf "$out"
mkdir -p "$out"

echo "== 1. sagactl validate workflows"
"$ctl" validate workflows/*.yaml workflows/examples/*.yaml
echo
echo "== sagactl check workflows/order_create.yaml  (what runs when a step fails)"
"$ctl" check workflows/order_create.yaml
echo

echo "== 2. sagad on workflows/ (embedded workers, SQLite at $out/sagad.db)"
"$build/bin/sagad" --workflows workflows --db "$out/sagad.db" --test-activities \
  --listen "127.0.0.1:$port" --log-level warn 2>"$out/sagad.log" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -sf "$SAGAD_URL/healthz" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { cat "$out/sagad.log"; exit 1; }
  sleep 0.1
done

ids=()
for i in 1 2 3 4 5; do
  decline=false
  [ $((i % 3)) -eq 0 ] && decline=true
  id=$("$ctl" start demo_order_test -o json \
        --input "{\"order_id\":\"order-$i\",\"decline\":$decline}" \
        --idempotency-key "demo-order-$i" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
  echo "started order-$i (decline=$decline): $id"
  ids+=("$id")
done
for id in "${ids[@]}"; do
  "$ctl" watch "$id" >/dev/null || true
done
echo
echo "== how they ended"
"$ctl" list --workflow demo_order_test
echo
echo "== audit trail of a declined order (${ids[2]})"
"$ctl" history "${ids[2]}"
echo
for f in workflows/*.yaml workflows/examples/*.yaml; do
  "$ctl" graph "$f" --format svg -o "$out/$(basename "${f%.yaml}").svg"
done
kill -TERM $pid
wait $pid || true
trap - EXIT
echo "== 3. sagad stopped. Database: $out/sagad.db; graphs: $out/*.svg"
