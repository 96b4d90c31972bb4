#!/usr/bin/env bash
# REST figures for `make bench`, measured with wrk on loopback against a real sagad (no
# --auth, built-in test activities with their effects journal off, so the orchestrator and
# the gateway are measured, not the activities):
#   - GET /v1/instances/{id} over instances that exist (the issue aims at 20,000/s here);
#   - starts through REST: POST /v1/workflows/demo_order_test/instances, each request with
#     its own Idempotency-Key and order, the sagas then running to their end meanwhile.
# Each figure is the median of REST_RUNS runs (default 3) of REST_SECONDS (default 5):
# requests/s, p50 and p99 latency (wrk --latency). Non-2xx answers are counted and shown.
# Prints numbers; asserts nothing about speed.
#
# Usage: bench/rest.sh [BUILD]   env: REST_SECONDS, REST_RUNS, REST_GET_CONNS ("16 64"),
#        REST_START_CONNS (64), REST_INSTANCES (200), REST_SYNC (full)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
secs=${REST_SECONDS:-5}
runs=${REST_RUNS:-3}
get_conns=${REST_GET_CONNS:-16 64}
start_conns=${REST_START_CONNS:-64}
n_instances=${REST_INSTANCES:-200}
sync=${REST_SYNC:-full}

command -v wrk >/dev/null || { echo "rest: wrk is not installed (scripts/deps.sh bench)"; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    wait "$pid" || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
mkdir "$tmp/wf"
cp workflows/examples/demo_order_test.yaml "$tmp/wf/"
SAGAD_TEST_EFFECTS=off "$build/bin/sagad" --workflows "$tmp/wf" --db "$tmp/sagad.db" \
  --listen "127.0.0.1:$port" --test-activities --sync "$sync" --log-level warn \
  2>"$tmp/sagad.log" &
pid=$!

# Bounded polls: sagad up, then no saga running (so runs start from the same state).
wait_for() {
  local what=$1; shift
  for _ in $(seq 600); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  echo "rest: timed out waiting for $what" >&2
  exit 1
}
ready() { curl -sf "$url/readyz" >/dev/null; }
idle() {
  curl -sf "$url/metrics" | awk '$1 == "sagad_sagas_active" { a = $2 } $1 == "sagad_engine_queue_depth" { q = $2 } END { exit !(a == 0 && q == 0) }'
}
wait_for "sagad to be ready" ready

for i in $(seq "$n_instances"); do
  curl -sf -X POST -H 'Content-Type: application/json' -d "{\"order_id\":\"seed-$i\"}" \
    "$url/v1/workflows/demo_order_test/instances" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
done >"$tmp/ids"
wait_for "the seeded sagas to end" idle

# One wrk run: prints "RPS P50_MS P99_MS NON2XX ERRORS".
wrk_run() {
  local out=$tmp/wrk.out
  wrk --latency "$@" >"$out"
  awk '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
      if (v ~ /m$/) return substr(v, 1, length(v) - 1) * 60000
      return v + 0
    }
    $1 == "Requests/sec:" { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { bad = $NF }
    /Socket errors:/ { gsub(",", ""); err = $4 + $6 + $8 + $10 }
    END { printf "%.0f %.3f %.3f %d %d\n", rps, p50, p99, bad, err }' "$out"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Runs a scenario runs times and prints its medians.
scenario() {
  local label=$1; shift
  local results=$tmp/results
  : >"$results"
  for r in $(seq "$runs"); do
    wrk_run "$@" "$r" >>"$results"
    wait_for "the sagas of the run to end" idle
  done
  local rps p50 p99 bad err
  rps=$(cut -d' ' -f1 "$results" | median)
  p50=$(cut -d' ' -f2 "$results" | median)
  p99=$(cut -d' ' -f3 "$results" | median)
  bad=$(awk '{ s += $4 } END { print s }' "$results")
  err=$(awk '{ s += $5 } END { print s }' "$results")
  printf '%-44s %9s req/s   p50 %7s ms   p99 %7s ms   (runs: %s; non-2xx %s, socket errors %s)\n' \
    "$label" "$rps" "$p50" "$p99" "$(cut -d' ' -f1 "$results" | tr '\n' ' ' | sed 's/ $//')" \
    "$bad" "$err"
}

echo "sagad on $url: $n_instances instances, --sync $sync, wrk ${secs}s x $runs runs (medians)"
for c in $get_conns; do
  scenario "GET /v1/instances/{id} ($c connections)" \
    -t2 -c"$c" -d"${secs}s" -s bench/rest_get.lua "$url" -- "$tmp/ids"
done
# wrk_run appends the run number: the start keys of each run are new.
scenario "POST .../instances starts (${start_conns} connections)" \
  -t2 -c"$start_conns" -d"${secs}s" -s bench/rest_start.lua "$url" --
started=$(curl -sf "$url/metrics" | awk '$1 == "sagad_sagas_started_total{workflow=\"demo_order_test\"}" { print $2 }')
finished=$(curl -sf "$url/metrics" | awk '$1 ~ /^sagad_sagas_finished_total/ { s += $2 } END { print s }')
echo "sagas started $started, finished $finished (all started sagas ran to their end)"
