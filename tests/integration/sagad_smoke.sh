#!/usr/bin/env bash
# End-to-end checks of the real binaries over a real socket: sagad serves REST, sagactl
# drives it; definitions reload on SIGHUP with old versions kept for running sagas;
# SIGTERM stops gracefully; a restarted sagad resumes a saga that was waiting.
# Prints "N passed, N failed" and exits 1 on any failure. Loopback only; every process
# started here is stopped by its pid.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD:-build}
sagad=$build/bin/sagad
ctl=$build/bin/sagactl
tmp=$(mktemp -d /tmp/sg_smokeXXXXXX)
passed=0 failed=0 pid= port=
check() { # check NAME CONDITION...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}
stop_sagad() {
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  pid=
}
cleanup() { stop_sagad; rm -rf "$tmp"; }
trap cleanup EXIT
# Port 0: the kernel picks a free port (a random one might be taken), and sagad logs it
# ("gateway listening on ... (port N, ...)"); read from the lines this start added, since
# the log is kept across restarts. Sets $port and SAGAD_URL.
start_sagad() {
  local from
  : >>"$tmp/sagad.log"
  from=$(wc -l <"$tmp/sagad.log")
  "$sagad" --workflows "$tmp/wf" --db "$tmp/sagad.db" --test-activities \
    --listen 127.0.0.1:0 --log-level info 2>>"$tmp/sagad.log" &
  pid=$!
  port=
  for _ in $(seq 1 100); do
    port=$(tail -n +"$((from + 1))" "$tmp/sagad.log" |
      sed -n 's/.*gateway listening on [^ ]* (port \([0-9]*\).*/\1/p' | head -1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  [ -n "$port" ] || return 1
  export SAGAD_URL=http://127.0.0.1:$port
  for _ in $(seq 1 100); do
    curl -sf "$SAGAD_URL/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
write_saga() { # version, wait
  cat > "$tmp/wf/smoke.yaml" <<YAML
saga: smoke
version: $1
steps:
  - id: first
    activity: test.echo
    input: '{v: $1}'
    compensate: {activity: test.echo}
  - id: pause
    wait: $2
  - id: last
    activity: test.echo
    pivot: true
YAML
}
mkdir -p "$tmp/wf"
write_saga 1 3s

check "sagad --help exits 0" "$sagad" --help >/dev/null
check "bad option exits 2" bash -c "'$sagad' --nope >/dev/null 2>&1; [ \$? -eq 2 ]"
check "sagad starts and serves /healthz" start_sagad

out=$("$ctl" start smoke -o json --input '{}' --idempotency-key k1)
id1=$(echo "$out" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
check "start returns an id" test -n "$id1"
again=$("$ctl" start smoke -o json --input '{}' --idempotency-key k1 | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
check "same idempotency key, same instance" test "$id1" = "$again"
check "unknown workflow exits 3 (not found)" bash -c "'$ctl' start nope --input '{}' >/dev/null 2>&1; [ \$? -eq 3 ]"

# Version 2 registers beside version 1 on SIGHUP; the running saga keeps version 1.
write_saga 2 0s
kill -HUP "$pid"
for _ in $(seq 1 50); do grep -q 'registered version 2' "$tmp/sagad.log" && break; sleep 0.1; done
check "SIGHUP registers version 2" grep -q 'registered version 2' "$tmp/sagad.log"
id2=$("$ctl" start smoke -o json --input '{}' | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
check "new starts use version 2" bash -c "'$ctl' get '$id2' -o json | grep -q '\"version\":2'"
check "running saga stays on version 1" bash -c "'$ctl' get '$id1' -o json | grep -q '\"version\":1'"

# Stop while saga 1 waits; a new sagad resumes it from the database.
stop_sagad
check "SIGTERM stops sagad" grep -q '"stopped"' "$tmp/sagad.log"
check "sagad restarts" start_sagad
check "resumed saga completes" "$ctl" watch "$id1" --interval 100
check "version-2 saga completed" bash -c "'$ctl' get '$id2' -o json | grep -q '\"status\":\"COMPLETED\"'"
check "history records the wait" bash -c "'$ctl' history '$id1' -o json | grep -q wait_started"
check "logs are JSON lines" bash -c "head -5 '$tmp/sagad.log' | python3 -c 'import sys,json; [json.loads(l) for l in sys.stdin]'"
stop_sagad
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
