#!/usr/bin/env bash
# Smoke test of the real Kafka broker that scripts/kafka.sh runs: start it in a temporary
# folder, produce and consume with kcat (librdkafka, the client sagad uses), SIGKILL it,
# restart it on the same data and find the message still there, then stop it.
# Prints "ok: ..."/"FAIL: ..." lines and "N passed, N failed"; exits 1 on any failure.
# Loopback only; the broker it starts is stopped by its recorded pid even on failure.
# Environment: KAFKA_TEST_PORT to pin the broker port (the controller takes port+1).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

kafka=scripts/kafka.sh
tmp=$(mktemp -d /tmp/sg_kafkaXXXXXX)
passed=0 failed=0

check() { # check NAME COMMAND...
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "ok: $name"
  else
    failed=$((failed + 1))
    echo "FAIL: $name"
  fi
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

cleanup() {
  "$kafka" stop --dir "$tmp" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
# A signal ends the script through exit, so the EXIT trap still stops the broker.
trap 'exit 130' INT TERM HUP

accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A port pair (broker, controller) that nothing listens on yet.
pick_port() {
  local p
  if [ -n "${KAFKA_TEST_PORT:-}" ]; then
    echo "$KAFKA_TEST_PORT"
    return 0
  fi
  for ((p = 19092 + 2 * (RANDOM % 400); p < 19992; p += 2)); do
    if ! accepts "$p" && ! accepts $((p + 1)); then
      echo "$p"
      return 0
    fi
  done
  return 1
}

if ! command -v kcat >/dev/null; then
  check "kcat is installed (scripts/deps.sh test)" false
  finish
  exit
fi
if ! "$kafka" fetch; then
  check "scripts/kafka.sh fetch" false
  finish
  exit
fi
port=$(pick_port) || {
  check "a free port pair in 19092..19991" false
  finish
  exit
}
broker=127.0.0.1:$port
topic=sagad.smoke
msg="order-$$-$RANDOM"

started() { # started LABEL: starts the broker, checks it prints its address
  local out
  out=$("$kafka" start --dir "$tmp" --port "$port" 2>"$tmp/start.err")
  [ "$out" = "$broker" ] || {
    cat "$tmp/start.err"
    return 1
  }
}
produce() { # produce KEY VALUE: acks=all, so it returns once the broker has it
  printf '%s:%s\n' "$1" "$2" | timeout 30 kcat -b "$broker" -P -t "$topic" -K: \
    -X acks=all -X message.timeout.ms=20000
}
# Reads the whole topic (as KEY:VALUE lines) and stops at its end.
consume() { timeout 30 kcat -b "$broker" -C -t "$topic" -o beginning -e -q -f '%k:%s\n'; }
has() { consume | grep -qx "$1"; }
# A consumer group (the __consumer_offsets topic, replication 1 here) reads the topic too.
group_reads() {
  timeout 60 kcat -b "$broker" -G "smoke-$$" "$topic" -o beginning -e -q -f '%k:%s\n' \
    -X partition.assignment.strategy=range 2>/dev/null | grep -qx "$1"
}
status_down() { ! "$kafka" status --dir "$tmp" >/dev/null 2>&1; }
# The pid file is gone and the process has exited: no /proc entry, or a zombie (its sockets
# are closed; whoever adopted it reaps it a moment later).
pid_gone() {
  local state
  [ ! -e "$tmp/kafka.pid" ] || return 1
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -z "$state" ] || [ "$state" = Z ] || [ "$state" = X ]
}
status_up() { "$kafka" status --dir "$tmp" >/dev/null 2>&1; }

t0=$SECONDS
check "start prints $broker" started
echo "   (first start: $((SECONDS - t0)) s)"
check "status: running" status_up
check "kcat lists the broker" bash -c "timeout 30 kcat -b '$broker' -L -m 10 | grep -q '1 brokers'"
check "produce k1:$msg" produce k1 "$msg"
check "consume finds k1:$msg" has "k1:$msg"
check "a consumer group reads k1:$msg" group_reads "k1:$msg"

pid=$(cat "$tmp/kafka.pid" 2>/dev/null)
check "crash (SIGKILL)" "$kafka" crash --dir "$tmp"
check "status: down after crash" status_down
check "crashed pid is gone" pid_gone "${pid:-0}"

t0=$SECONDS
check "restart on the same data" started
echo "   (restart after crash: $((SECONDS - t0)) s)"
check "k1:$msg survived the crash" has "k1:$msg"
check "produce k2 after restart" produce k2 "$msg"
check "consume finds k1 and k2 in order" bash -c \
  "[ \"\$(timeout 30 kcat -b '$broker' -C -t '$topic' -o beginning -e -q -f '%k\n' | tr '\n' ' ')\" = 'k1 k2 ' ]"

pid=$(cat "$tmp/kafka.pid" 2>/dev/null)
check "stop" "$kafka" stop --dir "$tmp"
check "status: down after stop" status_down
check "stopped pid is gone" pid_gone "${pid:-0}"

finish
