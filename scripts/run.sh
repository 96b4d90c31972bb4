#!/usr/bin/env bash
# The main job (`make run` / `make demo`): checks the shipped sagas, shows what the
# order saga does when a step fails, and draws it.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
ctl=$build/bin/sagactl
out=$build/out
mkdir -p "$out"

echo "== sagactl validate workflows"
"$ctl" validate workflows/*.yaml workflows/examples/*.yaml
echo
echo "== sagactl check workflows/order_create.yaml (what runs when a step fails)"
"$ctl" check workflows/order_create.yaml
echo
for f in workflows/*.yaml workflows/examples/*.yaml; do
  name=$(basename "${f%.yaml}")
  "$ctl" graph "$f" --format svg -o "$out/$name.svg"
done
echo "== graphs written: $(ls "$out"/*.svg | tr '\n' ' ')"
