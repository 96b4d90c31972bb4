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
  echo "== engine end to end, embedded workers, 4-step order saga, 10% compensate"
  n=${BENCH_SAGAS:-20000}
  run "$b/bench_engine" 2000 1 full
  run "$b/bench_engine" "$n" 64 full
  run "$b/bench_engine" 2000 1 normal
  run "$b/bench_engine" "$n" 64 normal
fi
