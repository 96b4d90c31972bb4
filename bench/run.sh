#!/usr/bin/env bash
# `make bench`: every benchmark, with the settings the issues ask for. Not tests:
# they print numbers and assert nothing about speed. The machine is shared and noisy:
# each benchmark reports a median of several rounds where it can.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
b=$build/bench
run() { echo "\$ $*"; "$@"; echo; }

echo "== definitions: load + validate (issue: 1,000 definitions of 50 steps under 1 s)"
run "$b/bench_dsl" 1000 50 5
if [ -x "$b/bench_jqcheck" ]; then
  echo "== jq expression checker vs libjq's compiler"
  run "$b/bench_jqcheck"
fi
if [ -x "$b/bench_store" ]; then
  echo "== SQLite store write batches"
  run "$b/bench_store"
fi
if [ -x "$b/bench_engine" ]; then
  # The test activities keep a durable journal (one fsync per call) for the crash test;
  # that measures the activities, not the orchestrator, so it is off here and measured
  # once separately below.
  echo "== engine end to end, embedded workers, 4-step order saga, 10% compensate"
  n=${BENCH_SAGAS:-20000}
  export SAGAD_TEST_EFFECTS=off
  run "$b/bench_engine" 2000 1 full
  run "$b/bench_engine" "$n" 64 full
  run "$b/bench_engine" "$n" 256 full
  run "$b/bench_engine" 2000 1 normal
  run "$b/bench_engine" "$n" 64 normal
  echo "== the same with the test activities' durable effects journal (an fsync per call)"
  SAGAD_TEST_EFFECTS=full run "$b/bench_engine" 5000 64 full
fi
echo "== REST with wrk on loopback: GET /v1/instances/{id} (issue: 20,000/s) and starts"
run bench/rest.sh "$build"
echo "== sagas over Kafka (a real broker) with 1, 2 and 4 saga-workers, next to embedded"
# 64 sagas in flight are bound by the round trips of each task; 256 load the processes.
run bench/kafka.sh "$build"
KBENCH_INFLIGHT=256 KBENCH_SAGAS=2000 run bench/kafka.sh "$build"
