#!/usr/bin/env bash
# Runs the test suites and prints one closing line "N passed, N failed".
# Usage: tests/run.sh [suite...]
#   suites: unit asan valgrind golden schema smoke cli crash e2e openapi kafka fuzz format
# With no argument it runs all of them (what `make test` does). Every suite runs even
# when an earlier one failed; the exit status is 1 if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

BUILD=${BUILD:-build}
ASAN_BUILD=${ASAN_BUILD:-build/asan}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
passed=0
failed=0
failures=()
log_dir=$BUILD/test-logs
mkdir -p "$log_dir"

ok() { passed=$((passed + 1)); }
ko() { failed=$((failed + 1)); failures+=("$1"); echo "FAIL: $1"; }

# Adds the counts of a cmocka run (its "[  PASSED  ] N test(s)." lines) to the totals.
tally_cmocka() {
  local log=$1 name=$2 rc=$3
  local p f
  p=$(grep -o '\[  PASSED  \] [0-9]*' "$log" | awk '{s+=$4} END {print s+0}')
  f=$(grep -o '\[  FAILED  \] [0-9]*' "$log" | awk '{s+=$4} END {print s+0}')
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    ko "$name (exit $rc, see $log)"
  elif [ "$f" -gt 0 ]; then
    failures+=("$name: $f failed (see $log)")
  fi
}

run_cmocka_dir() {
  local dir=$1 label=$2 wrapper=${3:-}
  local t
  for t in "$dir"/tests/test_*; do
    [ -x "$t" ] || continue
    local name log rc
    name="$label/$(basename "$t")"
    log="$log_dir/$label-$(basename "$t").log"
    echo "== $name"
    # shellcheck disable=SC2086
    $wrapper "$t" >"$log" 2>&1
    rc=$?
    grep -E '^\[  (PASSED|FAILED) |^\[  ERROR|^\[  FAILED  \]|ERROR SUMMARY|Sanitizer' "$log" | head -20
    tally_cmocka "$log" "$name" "$rc"
  done
}

suite_unit() { run_cmocka_dir "$BUILD" unit; }

suite_asan() {
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_cmocka_dir "$ASAN_BUILD" asan
}

suite_valgrind() {
  SG_UNDER_VALGRIND=1 run_cmocka_dir "$BUILD" valgrind \
    "valgrind -q --error-exitcode=99 --suppressions=tests/valgrind.supp --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect"
}

# Every bad fixture must produce exactly its .err; every good one must validate,
# and match its .check (failure matrix) and .dot (graph) goldens where present.
suite_golden() {
  local ctl=$BUILD/bin/sagactl f out
  for f in tests/fixtures/dsl/bad/*.yaml; do
    [ -e "$f" ] || continue
    out=$("$ctl" validate "$f" 2>&1)
    if [ $? -ne 1 ]; then
      ko "golden $f: validate did not exit 1"
    elif [ ! -f "${f%.yaml}.err" ]; then
      ko "golden $f: missing ${f%.yaml}.err"
    elif ! diff -u "${f%.yaml}.err" <(printf '%s\n' "$out") >"$log_dir/golden.diff"; then
      ko "golden $f: output differs"; cat "$log_dir/golden.diff"
    else ok; fi
  done
  for f in tests/fixtures/dsl/good/*.yaml workflows/*.yaml workflows/*/*.yaml; do
    [ -e "$f" ] || continue
    if ! out=$("$ctl" validate "$f" 2>&1) || [ "$out" != "$f: ok" ]; then
      ko "golden $f: not valid: $out"; continue
    fi
    ok
    local base=${f%.yaml}
    if [ -f "$base.check" ]; then
      if diff -u "$base.check" <("$ctl" check "$f") >"$log_dir/golden.diff"; then ok
      else ko "golden $base.check differs"; cat "$log_dir/golden.diff"; fi
    fi
    if [ -f "$base.dot" ]; then
      if diff -u "$base.dot" <("$ctl" graph "$f") >"$log_dir/golden.diff"; then ok
      else ko "golden $base.dot differs"; cat "$log_dir/golden.diff"; fi
    fi
    # The real Graphviz must accept every graph we draw.
    if "$ctl" graph "$f" | dot -Tsvg >/dev/null 2>"$log_dir/dot.err"; then ok
    else ko "dot rejects the graph of $f: $(head -1 "$log_dir/dot.err")"; fi
  done
}

suite_schema() {
  local log=$log_dir/schema.log
  python3 tests/schema/check_schema.py >"$log" 2>&1
  local rc=$?
  tail -3 "$log"
  local line p f
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  p=$(echo "$line" | awk '{print $1+0}')
  f=$(echo "$line" | awk '{print $3+0}')
  passed=$((passed + p)); failed=$((failed + f))
  if [ $rc -ne 0 ] && [ "${f:-0}" -eq 0 ]; then ko "schema check (exit $rc, see $log)"; fi
}

# Each fuzz target runs briefly on a corpus seeded from the fixtures; a crash fails.
suite_fuzz() {
  make --no-print-directory -j2 fuzz-build >"$log_dir/fuzz-build.log" 2>&1 || { ko "fuzz build (see $log_dir/fuzz-build.log)"; return; }
  local t name corpus
  for t in build/fuzz/fuzz_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    corpus=build/fuzz/corpus/$name
    mkdir -p "$corpus"
    [ -d "tests/fuzz/seeds/$name" ] && cp -n tests/fuzz/seeds/"$name"/* "$corpus"/ 2>/dev/null
    # The loader's corpus starts from every fixture and shipped workflow.
    if [ "$name" = fuzz_dsl ]; then
      for f in tests/fixtures/dsl/*/*.yaml workflows/*.yaml workflows/*/*.yaml; do
        [ -e "$f" ] && cp -n "$f" "$corpus/$(echo "$f" | tr / _)"
      done
    fi
    echo "== fuzz $name (${FUZZ_SECONDS}s)"
    if "$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix=build/fuzz/ "$corpus" >"$log_dir/$name.log" 2>&1; then
      ok; grep -E 'Done [0-9]+ runs' "$log_dir/$name.log" | tail -1
    else
      ko "fuzz $name (see $log_dir/$name.log)"; tail -30 "$log_dir/$name.log"
    fi
  done
}

# Runs a script that prints "N passed, N failed" and adds its counts.
run_counted() {
  local name=$1; shift
  local log=$log_dir/$name.log
  "$@" >"$log" 2>&1
  local rc=$?
  local line p f
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  p=$(echo "$line" | awk '{print $1+0}')
  f=$(echo "$line" | awk '{print $3+0}')
  passed=$((passed + p)); failed=$((failed + f))
  echo "$name: ${line:-no result line} (log: $log)"
  if [ $rc -ne 0 ] && [ "${f:-0}" -eq 0 ]; then ko "$name (exit $rc, see $log)"; fi
  if [ "${f:-0}" -gt 0 ] || [ $rc -ne 0 ]; then
    grep -E -i '^FAIL|seed' "$log" | head -20
  fi
  if [ "${f:-0}" -gt 0 ]; then failures+=("$name: $f failed"); fi
}

# The real binaries over a real socket: REST, sagactl, SIGHUP reload, restart.
suite_smoke() {
  BUILD=$BUILD run_counted smoke tests/integration/sagad_smoke.sh
  # Heartbeats over REST: progress on the running attempt; a silent long step completes.
  run_counted heartbeat python3 tests/integration/heartbeat_test.py --build "$BUILD"
}

# sagactl against real sagad processes (open, --auth, TLS): every command, both output
# modes, exit statuses; again on the ASan build, and under valgrind with CLI_VALGRIND=1.
suite_cli() {
  BUILD=$BUILD run_counted cli tests/integration/sagactl_test.sh
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    BUILD=$ASAN_BUILD run_counted cli-asan tests/integration/sagactl_test.sh
  if [ "${CLI_VALGRIND:-0}" = 1 ]; then
    BUILD=$BUILD CTL_WRAPPER="valgrind -q --error-exitcode=99 --suppressions=tests/valgrind.supp --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect" \
      run_counted cli-valgrind tests/integration/sagactl_test.sh
  fi
}

# kill -9 at random moments; every saga must end once, effects exactly as the saga says.
suite_crash() {
  run_counted crash python3 tests/crash/crash_test.py --sagad "$BUILD/bin/sagad" \
    --sagas "${CRASH_SAGAS:-2000}" --kills "${CRASH_KILLS:-20}"
}

# The REST API against gateway/openapi.json: schemathesis drives a real sagad.
suite_openapi() {
  run_counted openapi python3 tests/openapi/conformance.py --build "$BUILD" \
    --examples "${OPENAPI_EXAMPLES:-50}"
}

# The shop end to end: each outcome through sagad, checked in the services' databases, then
# a conservation run of random orders under injected failures.
suite_e2e() {
  run_counted e2e python3 tests/e2e/orders_e2e.py --build "$BUILD" \
    --conservation "${E2E_ORDERS:-2000}" --seed "${E2E_SEED:-$RANDOM}"
}

suite_format() {
  if make --no-print-directory format-check >"$log_dir/format.log" 2>&1; then ok
  else ko "format-check (run make format; see $log_dir/format.log)"; head -20 "$log_dir/format.log"; fi
}

# The real Kafka broker (scripts/kafka.sh): fetched once into ~/.cache/sagad, then started,
# crashed, restarted and stopped by tests/kafka/broker_smoke.sh.
suite_kafka() {
  if ! scripts/kafka.sh fetch >"$log_dir/kafka-fetch.log" 2>&1; then
    ko "kafka fetch (see $log_dir/kafka-fetch.log)"; tail -20 "$log_dir/kafka-fetch.log"; return
  fi
  run_counted kafka tests/kafka/broker_smoke.sh
  # sagad --transport kafka and saga-workers as processes: kill -9, broker crash, replay, DLQ.
  run_counted kafka-e2e python3 tests/kafka/kafka_e2e.py --build "$BUILD"
  # The shop's order saga with the services in saga-workers; a payment worker killed.
  run_counted kafka-orders python3 tests/kafka/kafka_orders.py --build "$BUILD"
  # Heartbeats: a long step's worker killed; its attempt times out by heartbeat, not timeout.
  run_counted kafka-heartbeat python3 tests/kafka/kafka_heartbeat.py --build "$BUILD"
}

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(unit asan valgrind golden schema smoke cli crash e2e openapi kafka fuzz format)
for s in "${suites[@]}"; do
  echo "### suite $s"
  "suite_$s"
done

echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "failures:"; printf '  %s\n' "${failures[@]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#failures[@]} -eq 0 ]
