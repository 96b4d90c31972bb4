#!/usr/bin/env bash
# Kafka figures for `make bench`: sagas/s and p50/p99 latency of the order-shaped test saga
# (workflows/examples/demo_order_test.yaml: 4 steps, the last fails once, so 5 tasks per
# saga) through a real sagad over a real broker, with 1, 2 and 4 saga-workers serving the
# `test` queue, next to the same load on an embedded sagad. Everything runs on this machine,
# so it also reports the CPU each process used during the runs (utime + stime from
# /proc/PID/stat before and after): sagad, the workers together, the broker (java).
# The activities' effects journal is off (SAGAD_TEST_EFFECTS=off): the transport is
# measured, not the test module's fsyncs. sagad keeps --sync full (its default).
#
# Each figure is the median of KBENCH_RUNS runs (default 3) of KBENCH_SAGAS sagas (default
# 1000) with at most KBENCH_INFLIGHT (default 64) unfinished at a time (bench/kafka_load.py).
# Latency is sagad's: start durable -> end durable. The broker is its own, started and
# stopped here by scripts/kafka.sh on a free loopback port in a private folder.
# Prints numbers; asserts nothing about speed.
#
# Usage: bench/kafka.sh [BUILD]   env: KBENCH_SAGAS, KBENCH_RUNS, KBENCH_INFLIGHT,
#        KBENCH_WORKERS ("1 2 4"), KBENCH_WORKER_INFLIGHT (saga-worker --inflight, default 8),
#        KBENCH_WARMUP (sagas run once before the first Kafka figure, default 3000: the
#        broker's JVM is still compiling at first and would make that figure slower)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
sagas=${KBENCH_SAGAS:-1000}
runs=${KBENCH_RUNS:-3}
inflight=${KBENCH_INFLIGHT:-64}
worker_counts=${KBENCH_WORKERS:-1 2 4}
worker_inflight=${KBENCH_WORKER_INFLIGHT:-8}
warmup=${KBENCH_WARMUP:-3000}

for tool in java mvn; do
  if ! command -v "$tool" >/dev/null; then
    echo "kafka bench: skipped: $tool is not installed (scripts/deps.sh test installs it)"
    exit 0
  fi
done

tmp=$(mktemp -d)
broker_dir=$tmp/kafka
pids=()
stop_pid() { # SIGTERM, then wait for it (our children only)
  local p=$1
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p"
    wait "$p" 2>/dev/null || true
  fi
}
cleanup() {
  local p
  for p in "${pids[@]}"; do stop_pid "$p"; done
  [ -d "$broker_dir" ] && scripts/kafka.sh stop --dir "$broker_dir" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { # a loopback port with the next one free too (the broker's controller)
  python3 - <<'EOF'
import socket
for _ in range(200):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p + 1)); t.close(); print(p); break
    except OSError:
        t.close()
EOF
}

wait_for() { # bounded poll: wait_for WHAT CMD...
  local what=$1; shift
  for _ in $(seq 900); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  echo "kafka bench: timed out waiting for $what" >&2
  exit 1
}

tck=$(getconf CLK_TCK)
cpu_ticks() { # summed utime + stime of the pids (0 for one that is gone)
  local p total=0 t
  for p in "$@"; do
    t=$(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

export SAGAD_TEST_EFFECTS=off
mkdir -p "$tmp/wf"
cp workflows/examples/demo_order_test.yaml "$tmp/wf/"
sagad_pid=
sagad_port=

start_sagad() { # start_sagad NAME ARGS...: a fresh database each time
  local name=$1; shift
  sagad_port=$(free_port)
  mkdir -p "$tmp/$name"
  "$build/bin/sagad" --workflows "$tmp/wf" --db "$tmp/$name/sagad.db" --data-dir "$tmp/$name" \
    --listen "127.0.0.1:$sagad_port" --test-activities --log-level warn "$@" \
    2>"$tmp/$name/sagad.log" &
  sagad_pid=$!
  pids+=("$sagad_pid")
  wait_for "sagad ($name) to be ready" curl -sf "http://127.0.0.1:$sagad_port/readyz" -o /dev/null
  db=$tmp/$name/sagad.db
}

# One scenario: warm up, then $runs runs; prints its row. Globals: sagad_pid, worker pids.
results=$tmp/results
scenario() {
  local label=$1; shift
  local others=("$@") # the pids whose CPU is counted besides sagad (workers, broker)
  local url=http://127.0.0.1:$sagad_port r line tag
  tag=$(printf '%s' "$label" | tr -c 'A-Za-z0-9' '-')
  # Warm up (the broker's JIT, the groups' first fetches) before anything is measured.
  python3 bench/kafka_load.py "$url" "$db" demo_order_test "$tag-warm" 300 "$inflight" \
    >/dev/null
  : >"$results"
  for r in $(seq "$runs"); do
    local s0 w0 b0 s1 w1 b1 t0 t1
    s0=$(cpu_ticks "$sagad_pid")
    w0=$(cpu_ticks "${workers[@]}")
    b0=$(cpu_ticks "${others[@]}")
    t0=$(date +%s%N)
    line=$(python3 bench/kafka_load.py "$url" "$db" demo_order_test "$tag-$r" "$sagas" \
      "$inflight")
    t1=$(date +%s%N)
    s1=$(cpu_ticks "$sagad_pid")
    w1=$(cpu_ticks "${workers[@]}")
    b1=$(cpu_ticks "${others[@]}")
    # sagas/s p50 p99 completed other | CPU %: sagad workers broker (of one core)
    awk -v l="$line" -v s=$((s1 - s0)) -v w=$((w1 - w0)) -v b=$((b1 - b0)) -v tck="$tck" \
      -v ns=$((t1 - t0)) 'BEGIN { secs = ns / 1e9; printf "%s %.0f %.0f %.0f\n", l,
        100 * s / tck / secs, 100 * w / tck / secs, 100 * b / tck / secs }' >>"$results"
  done
  local col
  printf '%-26s' "$label"
  for col in 1 2 3; do printf ' %9s' "$(cut -d' ' -f$col "$results" | median)"; done
  for col in 6 7 8; do printf ' %8s%%' "$(cut -d' ' -f$col "$results" | median)"; done
  printf '   (sagas/s: %s; not completed: %s)\n' \
    "$(cut -d' ' -f1 "$results" | tr '\n' ' ' | sed 's/ $//')" \
    "$(awk '{ s += $5 } END { print s }' "$results")"
}

header() {
  printf '%-26s %9s %9s %9s %9s %9s %9s\n' "" "sagas/s" "p50 ms" "p99 ms" "sagad" "workers" \
    "broker"
}

echo "demo_order_test (5 tasks per saga), $sagas sagas per run, at most $inflight unfinished," \
  "median of $runs runs; CPU in % of one core during the runs ($(nproc) cores here)"
header

workers=()
start_sagad embedded
scenario "embedded (8 threads)"
stop_pid "$sagad_pid"

port=$(free_port)
broker=$(scripts/kafka.sh start --dir "$broker_dir" --port "$port" 2>"$tmp/broker.log")
broker_pid=$(cat "$broker_dir/kafka.pid")
start_sagad kafka --transport kafka --brokers "$broker"
for n in $worker_counts; do
  for p in "${workers[@]}"; do stop_pid "$p"; done
  workers=()
  for i in $(seq "$n"); do
    log=$tmp/kafka/w$n-$i.log
    "$build/bin/saga-worker" --queue test --brokers "$broker" --data-dir "$tmp/kafka" \
      --inflight "$worker_inflight" --worker-id "w$n-$i" --log-level info 2>"$log" &
    workers+=("$!")
    pids+=("$!")
  done
  # Every worker holds partitions (6 of saga.tasks.test between them) before the runs.
  for i in $(seq "$n"); do
    wait_for "worker $i of $n to join" grep -q "assigned [1-9]" "$tmp/kafka/w$n-$i.log"
  done
  if [ "$warmup" -gt 0 ]; then
    python3 bench/kafka_load.py "http://127.0.0.1:$sagad_port" "$db" demo_order_test \
      broker-warm "$warmup" "$inflight" >/dev/null
    warmup=0
  fi
  scenario "kafka, $n worker$([ "$n" -gt 1 ] && echo s || true)" "$broker_pid"
done
