#!/usr/bin/env bash
# sagactl against real sagad processes on loopback: every command in human and -o json
# mode, its exit status (0 ok, 1 refused/failed, 2 usage, 3 not found, 4 auth, 5 server
# or connection), --help on every command, orders end to end, watch on a compensated
# saga. Three servers: the shop without authentication, the shop with --auth (API keys
# of several scopes), and the shop over TLS with a self-signed certificate made here by
# openssl. Prints "N passed, N failed"; exits 1 on any failure. Every process started
# here is stopped by its pid. BUILD=build/asan runs the sanitized binaries; CTL_WRAPPER
# runs each sagactl under a wrapper (valgrind).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
build=${BUILD:-build}
sagad=$root/$build/bin/sagad
ctl=$root/$build/bin/sagactl
tmp=$(mktemp -d /tmp/sg_ctlXXXXXX)
passed=0 failed=0 rc=0
pids=()
export TZ=UTC
unset SAGAD_URL SAGAD_TOKEN SAGAD_CACERT
# CTL_WRAPPER="valgrind -q --error-exitcode=99 ...": run every sagactl under it.
if [ -n "${CTL_WRAPPER:-}" ]; then
  printf '#!/bin/sh\nexec %s %s "$@"\n' "$CTL_WRAPPER" "$ctl" >"$tmp/sagactl"
  chmod +x "$tmp/sagactl"
  ctl=$tmp/sagactl
fi

pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

stop_all() {
  local p
  for p in "${pids[@]}"; do
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  pids=()
}
cleanup() { stop_all; rm -rf "$tmp"; }
trap cleanup EXIT

# run CMD...: stdout in $tmp/out, stderr in $tmp/err, exit status in $rc.
run() { "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; }
# expect NAME STATUS CMD...: runs it and checks the exit status.
expect() {
  local name=$1 want=$2; shift 2
  run "$@"
  if [ "$rc" -eq "$want" ]; then pass; else
    fail "$name: exit $rc, want $want; stderr: $(head -c 300 "$tmp/err")"; fi
}
# has NAME PATTERN [FILE]: the last output (default stdout) matches PATTERN (grep -E).
has() {
  local file=${3:-$tmp/out}
  if grep -Eq -- "$2" "$file"; then pass; else
    fail "$1: no /$2/ in $(basename "$file"): $(head -c 300 "$file")"; fi
}
# json NAME EXPR: the last stdout is JSON and the Python expression EXPR holds for it (d).
json() {
  if python3 -c "import json,sys; d=json.load(open('$tmp/out')); sys.exit(0 if ($2) else 1)" \
      2>"$tmp/pyerr"; then pass; else
    fail "$1: not ($2): $(head -c 300 "$tmp/out") $(head -c 200 "$tmp/pyerr")"; fi
}
# one_line NAME: stderr is exactly one line.
one_line() {
  if [ "$(wc -l <"$tmp/err")" -eq 1 ]; then pass; else
    fail "$1: stderr is not one line: $(cat "$tmp/err")"; fi
}
field() { python3 -c "import json,sys; print(json.load(open('$tmp/out'))$1)"; }

# start_sagad NAME ARGS...: a sagad on 127.0.0.1, port chosen by the kernel and read from
# its log; sets $port. Waits (bounded) until /healthz answers.
# WORKFLOWS (default workflows) is the --workflows folder.
start_sagad() {
  local name=$1; shift
  mkdir -p "$tmp/$name"
  : >"$tmp/$name/sagad.log"
  "$sagad" --workflows "${WORKFLOWS:-workflows}" --db "$tmp/$name/sagad.db" --seed activities/seed/shop.json \
    --listen 127.0.0.1:0 "$@" 2>"$tmp/$name/sagad.log" &
  local p=$!
  pids+=("$p")
  port=
  for _ in $(seq 1 300); do
    port=$(sed -n 's/.*gateway listening on [^ ]* (port \([0-9]*\).*/\1/p' "$tmp/$name/sagad.log")
    [ -n "$port" ] && break
    kill -0 "$p" 2>/dev/null || { echo "sagad $name exited: $(tail -3 "$tmp/$name/sagad.log")"; return 1; }
    sleep 0.1
  done
  [ -n "$port" ] || return 1
  for _ in $(seq 1 100); do
    curl -skf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    curl -skf "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

order() { # order ID [CARD CUSTOMER] -> order_create input
  local id=$1 card=${2:-tok_visa_alice} cus=${3:-cus_alice}
  printf '{"order_id":"%s","customer_id":"%s","items":[{"sku":"BOOK-001","qty":1,"price":2990}],"payment":{"card_token":"%s"},"total":2990,"currency":"EUR"}' \
    "$id" "$cus" "$card"
}
declined() { # Erin's card has a 20.00 limit
  printf '{"order_id":"%s","customer_id":"cus_erin","items":[{"sku":"BOOK-002","qty":1,"price":4500}],"payment":{"card_token":"tok_low_funds"},"total":4500,"currency":"EUR"}' "$1"
}

# ---- offline: help, usage, files ---------------------------------------------------------
expect "--help" 0 "$ctl" --help
has "--help lists commands" "orders +the shop's orders"
has "--help documents exit status" "3 not found"
expect "no command" 2 "$ctl"
expect "unknown command" 2 "$ctl" lsit
has "unknown command suggests" 'did you mean "list"' "$tmp/err"
for c in validate check graph start get list history cancel retry watch workflows orders events \
    "orders create" "orders get" "orders cancel" dlq "dlq list" "dlq requeue" "dlq discard"; do
  # shellcheck disable=SC2086
  expect "$c --help" 0 "$ctl" $c --help
  has "$c --help usage line" "^usage: sagactl $c"
done
expect "help orders cancel" 0 "$ctl" help orders cancel
has "help orders cancel is its help" "--reason"
expect "get without ID" 2 "$ctl" get
expect "get with two IDs" 2 "$ctl" get a b
expect "unknown option" 2 "$ctl" list --nope
expect "bad -o" 2 "$ctl" list -o yaml
expect "bad --limit" 2 "$ctl" list --limit x
expect "--interval out of range" 2 "$ctl" watch X --interval 5
expect "option without value" 2 "$ctl" start order_create --input
expect "orders without subcommand" 2 "$ctl" orders
expect "common option without value" 2 "$ctl" --server
expect "bad -o before the command" 2 "$ctl" -o yaml list
has "usage message" "^sagactl: unknown output format" "$tmp/err"
expect "unknown option before the command" 2 "$ctl" --nope list
expect "--after not a number" 2 "$ctl" history X --after x
expect "orders unknown subcommand" 2 "$ctl" orders list
expect "orders create without --input" 2 "$ctl" orders create
expect "graph without FILE/--instance/--workflow" 2 "$ctl" graph
expect "graph FILE and --instance" 2 "$ctl" graph workflows/order_create.yaml --instance X
expect "graph bad format" 2 "$ctl" graph workflows/order_create.yaml --format png
expect "validate without files" 2 "$ctl" validate
expect "validate shipped workflows" 0 "$ctl" validate workflows/order_create.yaml workflows/order_cancel.yaml
has "validate says ok" "order_cancel.yaml: ok"
bad=$(ls tests/fixtures/dsl/bad/*.yaml | head -1)
expect "validate a bad file" 1 "$ctl" validate "$bad"
has "validate locates the error" ":[0-9]+:[0-9]+: error:"
expect "check" 0 "$ctl" check workflows/order_create.yaml
expect "graph FILE" 0 "$ctl" graph workflows/order_create.yaml
has "graph FILE is DOT" "^digraph"
expect "graph FILE -o" 0 "$ctl" graph workflows/order_create.yaml --format svg -o "$tmp/f.svg"
if grep -q "<svg" "$tmp/f.svg"; then pass; else fail "graph FILE --format svg -o: no SVG"; fi
expect "nothing listening" 5 "$ctl" --server http://127.0.0.1:1 list
has "connection error says where" "cannot reach http://127.0.0.1:1" "$tmp/err"

# ---- the shop, no authentication -----------------------------------------------------------
if ! start_sagad open; then fail "sagad (open) did not start"; echo "$passed passed, $failed failed"; exit 1; fi
export SAGAD_URL=http://127.0.0.1:$port

expect "workflows" 0 "$ctl" workflows
has "workflows table" "^order_create +1 +6 "
expect "workflows -o json" 0 "$ctl" workflows -o json
json "workflows json" "any(w['name'] == 'order_cancel' for w in d)"
expect "workflows NAME" 0 "$ctl" workflows order_create
has "workflows NAME steps" "^charge_payment +activity +compensatable +payment.charge"
expect "workflows unknown" 3 "$ctl" workflows nope

order ORD-A1 >"$tmp/a1.json"
expect "start" 0 "$ctl" start order_create --input @"$tmp/a1.json" --idempotency-key a1
has "start prints the instance" "^started [0-9A-Z]{26} \(order_create v1, RUNNING\)"
id_a1=$(sed -n 's/^started \([0-9A-Z]*\).*/\1/p' "$tmp/out")
expect "start replay -o json" 0 "$ctl" -o json start order_create --input @"$tmp/a1.json" --idempotency-key a1
json "replay is the same instance" "d['id'] == '$id_a1' and d['created'] is False"
expect "start replay (human)" 0 "$ctl" start order_create --input @"$tmp/a1.json" --idempotency-key a1
has "replay says so" "^already started: $id_a1"
expect "watch completes" 0 "$ctl" watch "$id_a1" --interval 50
has "watch ends COMPLETED" "$id_a1 COMPLETED"
expect "start --input @- --watch" 0 "$ctl" start order_create --input @- --watch <<<"$(order ORD-A2)"
has "start --watch follows" "COMPLETED"
expect "invalid input" 1 "$ctl" start order_create --input '{"order_id":"X"}'
has "problem line: title, status, detail, fields" "Bad Request \(400\): the input does not match.*: .*(customer_id|items)" "$tmp/err"
one_line "problem is one line"
expect "invalid input -o json" 1 "$ctl" start order_create -o json --input '{"order_id":"X"}'
json "problem JSON on stdout" "d['status'] == 400 and len(d['errors']) > 0"
expect "start unknown workflow" 3 "$ctl" start nope

declined ORD-D1 >"$tmp/d1.json"
expect "start declined -o json" 0 "$ctl" start order_create -o json --input @"$tmp/d1.json"
id_d1=$(field "['id']")
expect "watch on a compensated saga exits 1" 1 "$ctl" watch "$id_d1" --interval 50
has "watch shows the compensation" "COMPENSATED"
has "watch shows the error" "payment.declined"
expect "watch -o json: the final instance" 1 "$ctl" watch "$id_d1" -o json
json "watch json" "d['id'] == '$id_d1' and d['status'] == 'COMPENSATED'"

expect "get" 0 "$ctl" get "$id_d1"
has "get header" "^status: +COMPENSATED"
has "get steps" "^charge_payment +activity +failed +1 +none .*payment.declined"
has "get attempts" "^ATTEMPT +STEP +ACTIVITY"
has "get readable times" "^created: +20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}$"
expect "get -o json" 0 "$ctl" get "$id_d1" -o json
json "get json as sent" "d['status'] == 'COMPENSATED' and 'attempts' in d"
# as the server sent it, plus a newline
if "$ctl" get "$id_d1" -o json | cmp -s - <(curl -s "$SAGAD_URL/v1/instances/$id_d1"; echo); then pass
else fail "get -o json is not the server's JSON as is"; fi
expect "get unknown" 3 "$ctl" get 01NOSUCHINSTANCE
has "get unknown: one readable line" "^sagactl get: Not Found \(404\): no instance" "$tmp/err"
one_line "404 is one line"
expect "get unknown -o json" 3 "$ctl" get 01NOSUCHINSTANCE -o json
json "404 problem JSON" "d['status'] == 404"

expect "history" 0 "$ctl" history "$id_d1"
has "history rows" "saga_started"
has "history readable times" "^1 +20[0-9-]{8} [0-9:]{8}\.[0-9]{3} +saga_started"
expect "history -o json" 0 "$ctl" history "$id_d1" -o json
json "history json" "d['items'][0]['type'] == 'saga_started'"
expect "history --limit 2" 0 "$ctl" history "$id_d1" --limit 2
has "history paging hint" "more: add --after 2" "$tmp/err"
expect "history unknown" 3 "$ctl" history 01NOSUCHINSTANCE
expect "watch unknown" 3 "$ctl" watch 01NOSUCHINSTANCE

expect "list" 0 "$ctl" list
has "list table" "^ID +WORKFLOW +VERSION +STATUS +CREATED +UPDATED"
has "list rows" "^$id_a1 +order_create +1 +COMPLETED"
expect "list --status -o json" 0 "$ctl" list --status COMPENSATED -o json
json "list filter" "d['items'] and all(i['status'] == 'COMPENSATED' for i in d['items'])"
expect "list --limit 1" 0 "$ctl" list --limit 1
has "list paging hint" "more: add --page-token" "$tmp/err"
expect "list bad status (400)" 1 "$ctl" list --status BOGUS

expect "cancel a finished saga (409)" 1 "$ctl" cancel "$id_a1"
has "409 line" "Conflict \(409\)" "$tmp/err"
expect "retry a completed saga (409)" 1 "$ctl" retry "$id_a1"
expect "cancel unknown" 3 "$ctl" cancel 01NOSUCHINSTANCE
expect "retry unknown -o json" 3 "$ctl" retry 01NOSUCHINSTANCE -o json
# A saga that waits 15 minutes (grace period) before charging: cancel it while it waits.
printf '{"order_id":"ORD-W1","customer_id":"cus_bob","items":[{"sku":"MUG-001","qty":1,"price":1200}],"payment":{"card_token":"tok_visa_bob"},"total":1200,"currency":"EUR","delivery_date":"2030-01-02"}' >"$tmp/w1.json"
expect "start a waiting saga" 0 "$ctl" start example.wait_reminder -o json --input @"$tmp/w1.json"
id_w1=$(field "['id']")
expect "cancel a running saga" 0 "$ctl" cancel "$id_w1"
has "cancel accepted" "^cancel of $id_w1 accepted"
expect "watch the cancelled saga exits 1" 1 "$ctl" watch "$id_w1" --interval 50
has "cancelled saga compensated" "$id_w1 COMPENSATED"
expect "cancel -o json (409 after the end)" 1 "$ctl" cancel "$id_w1" -o json
json "cancel 409 json" "d['status'] == 409"

expect "graph --workflow" 0 "$ctl" graph --workflow order_create
has "graph --workflow is DOT" "^digraph"
expect "graph --instance svg" 0 "$ctl" graph --instance "$id_d1" --format svg -o "$tmp/i.svg"
if grep -q "<svg" "$tmp/i.svg"; then pass; else fail "graph --instance: no SVG"; fi
expect "graph --workflow --version" 0 "$ctl" graph --workflow order_create --version 1
expect "graph unknown instance" 3 "$ctl" graph --instance 01NOSUCHINSTANCE
expect "graph unknown workflow" 3 "$ctl" graph --workflow nope

# orders end to end
order ORD-O1 >"$tmp/o1.json"
expect "orders create" 0 "$ctl" orders create --input @"$tmp/o1.json" --watch
has "orders create prints the saga" "^order ORD-O1 placed: saga [0-9A-Z]{26}"
has "orders create --watch follows" "COMPLETED"
expect "orders create again -o json" 0 "$ctl" orders create -o json --input @"$tmp/o1.json"
json "orders create json" "d['order_id'] == 'ORD-O1' and len(d['instance_id']) == 26"
expect "orders get" 0 "$ctl" orders get ORD-O1
has "orders get summary" "^status: +approved"
has "orders get money" "^total: +29\.90 EUR"
has "orders get payment" "^payment: +charged: charged 29\.90 EUR on card"
has "orders get lines" "^BOOK-001 +1 +29\.90 EUR +29\.90 EUR"
expect "orders get -o json" 0 "$ctl" orders get ORD-O1 -o json
json "orders get json" "d['order_id'] == 'ORD-O1' and d['saga']['status'] == 'COMPLETED'"
expect "orders get unknown" 3 "$ctl" orders get ORD-NOPE
expect "orders cancel bad reason (400)" 1 "$ctl" orders cancel ORD-O1 --reason whim
has "400 names the field" "Bad Request \(400\).*reason" "$tmp/err"
expect "orders cancel" 0 "$ctl" orders cancel ORD-O1 --reason other --note 'said "no"' --requested-by ops
has "orders cancel prints the saga" "^order ORD-O1 cancelling: saga [0-9A-Z]{26}"
cancel_id=$(sed -n 's/.*saga \([0-9A-Z]*\).*/\1/p' "$tmp/out")
expect "watch the cancellation" 0 "$ctl" watch "$cancel_id" --interval 50
expect "orders get after cancel" 0 "$ctl" orders get ORD-O1
has "order is cancelled" "^status: +cancelled"
has "payment refunded" "refunded 29\.90 EUR"
has "cancellation listed" "^$cancel_id +COMPLETED .* other"
expect "orders cancel unknown" 3 "$ctl" orders cancel ORD-NOPE
declined ORD-O2 >"$tmp/o2.json"
expect "orders create declined --watch exits 1" 1 "$ctl" orders create --input @"$tmp/o2.json" --watch
expect "orders get declined" 0 "$ctl" orders get ORD-O2
has "declined order" "^status: +rejected"
has "decline reason" "^payment: +declined \(45\.00 EUR: "
expect "orders cancel --watch -o json" 0 "$ctl" orders create --input @- -o json <<<"$(order ORD-O3)"
expect "watch ORD-O3" 0 "$ctl" watch "$(field "['instance_id']")" --interval 50
expect "orders cancel --watch -o json" 0 "$ctl" orders cancel ORD-O3 --watch -o json
json "cancel --watch json: the final instance" "d['workflow'] == 'order_cancel' and d['status'] == 'COMPLETED'"

expect "events" 0 "$ctl" events
has "events table" "^ID +TIME +TYPE +CORRELATION +SOURCE +DATA"
has "events rows" "order\.created"
expect "events --type -o json" 0 "$ctl" events --type payment.failed -o json
json "events type filter" "d['items'] and all(e['type'] == 'payment.failed' for e in d['items'])"
expect "events --correlation-id" 0 "$ctl" events --correlation-id "$id_d1"
has "events of one saga" "payment\.failed +$id_d1 +payment"
expect "events --limit 1" 0 "$ctl" events --limit 1
has "events paging hint" "more: add --after 1" "$tmp/err"
expect "events --after --limit -o json" 0 "$ctl" events --after 1 --limit 1 -o json
json "events after" "d['items'][0]['id'] == 2"
expect "events bad limit" 2 "$ctl" events --limit 0

# Embedded sagad: nothing is dead-lettered, every dead letter id is unknown.
expect "dlq list" 0 "$ctl" dlq list
has "dlq table" "^ID +STATUS +QUEUE +RECEIVED +INSTANCE +STEP +ATTEMPT +REASON"
expect "dlq list -o json" 0 "$ctl" dlq list --queue payment --status new -o json
json "dlq list is empty" "d == {'items': [], 'next_after': None}"
expect "dlq list bad status: 400 -> 1" 1 "$ctl" dlq list --status bogus
expect "dlq requeue unknown: 404 -> 3" 3 "$ctl" dlq requeue 1
expect "dlq discard unknown: 404 -> 3" 3 "$ctl" dlq discard 7
expect "dlq discard bad id" 2 "$ctl" dlq discard x

# ---- heartbeats: a long task whose step has `heartbeat:` ------------------------------------
# The sleep reports {"slept_ms","of"} as its progress every 100 ms; the embedded workers send
# it with their heartbeats, sagad records the last one on the attempt, `get` shows it.
mkdir -p "$tmp/hbwf"
cat >"$tmp/hbwf/hb.yaml" <<'YAML'
saga: hb
version: 1
steps:
  - id: long
    activity: test.sleep
    input: '{ms: 60000, heartbeat_every_ms: 100}'
    timeout: 2m
    heartbeat: 5s
    compensate: none
YAML
if ! WORKFLOWS=$tmp/hbwf start_sagad hb --test-activities; then fail "sagad (heartbeats) did not start"
else
  hb_url=http://127.0.0.1:$port
  expect "start a heartbeating saga" 0 "$ctl" --server "$hb_url" start hb -o json
  id_hb=$(field "['id']")
  for _ in $(seq 1 100); do
    run "$ctl" --server "$hb_url" get "$id_hb"
    grep -q "last heartbeat" "$tmp/out" && grep -q "progress" "$tmp/out" && break
    sleep 0.1
  done
  has "get shows the last heartbeat, its worker and progress" \
    '^long attempt 1: last heartbeat [0-9]+s ago from [^ ;]+; progress \{"slept_ms":[0-9]+,"of":60000\}$'
  expect "get -o json (heartbeats)" 0 "$ctl" --server "$hb_url" get "$id_hb" -o json
  json "attempt heartbeat_ms, worker and progress as sent" \
    "(lambda a: a['status'] == 'running' and isinstance(a['heartbeat_ms'], int) and abs(a['heartbeat_ms'] / 1000 - __import__('time').time()) < 60 and isinstance(a['worker'], str) and a['progress']['of'] == 60000)(d['attempts'][0])"
  expect "cancel the heartbeating saga" 0 "$ctl" --server "$hb_url" cancel "$id_hb"
fi

# ---- the shop with --auth: API keys of several scopes --------------------------------------
mkdir -p "$tmp/keys"
keyfile() { # name scope -> {"name":..,"sha256":..,"scopes":[..]}, key in $tmp/keys/NAME
  printf 'key-%s-%s' "$1" "$(openssl rand -hex 16)" >"$tmp/keys/$1"
  printf '{"name":"%s","sha256":"%s","scopes":["%s"]}' "$1" "$("$sagad" --hash-key <"$tmp/keys/$1")" "$2"
}
printf '{"keys":[%s,%s,%s]}' "$(keyfile reader read)" "$(keyfile starter start)" \
  "$(keyfile admin admin)" >"$tmp/auth.json"
if ! start_sagad auth --auth "$tmp/auth.json"; then fail "sagad (auth) did not start"
else
  export SAGAD_URL=http://127.0.0.1:$port
  expect "no token: 401 -> 4" 4 "$ctl" list
  has "401 line with a hint" "Unauthorized \(401\).*--token" "$tmp/err"
  one_line "401 is one line"
  expect "wrong token: 401 -> 4" 4 "$ctl" list --token not-a-valid-key-at-all
  expect "read key lists" 0 "$ctl" list --token "$(cat "$tmp/keys/reader")"
  expect "read key cannot start: 403 -> 4" 4 "$ctl" start order_create --token @"$tmp/keys/reader" --input @"$tmp/a1.json"
  has "403 line" "Forbidden \(403\).*\"start\" scope" "$tmp/err"
  expect "403 -o json" 4 "$ctl" -o json --token @"$tmp/keys/reader" orders create --input @"$tmp/o1.json"
  json "403 problem json" "d['status'] == 403 and d['required_scope'] == 'start'"
  expect "start key places an order (--token @FILE)" 0 "$ctl" orders create --token @"$tmp/keys/starter" --input @"$tmp/o1.json" --watch
  expect "start key cannot cancel: 403 -> 4" 4 "$ctl" orders cancel ORD-O1 --token @"$tmp/keys/starter"
  expect "SAGAD_TOKEN admin cancels" 0 env SAGAD_TOKEN="$(cat "$tmp/keys/admin")" "$ctl" orders cancel ORD-O1
  expect "SAGAD_TOKEN admin reads events" 0 env SAGAD_TOKEN="$(cat "$tmp/keys/admin")" "$ctl" events -o json
  expect "unreadable token file" 1 "$ctl" list --token @"$tmp/keys/nope"
  expect "unknown id with a token: 404 -> 3" 3 "$ctl" get 01NOSUCHINSTANCE --token @"$tmp/keys/admin"
  expect "graph needs a token too" 4 "$ctl" graph --workflow order_create
fi

# ---- the shop over TLS (self-signed certificate made now) -----------------------------------
if ! openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/key.pem" -out "$tmp/cert.pem" \
    -days 1 -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    >"$tmp/openssl.log" 2>&1; then
  fail "openssl could not make a certificate: $(tail -2 "$tmp/openssl.log")"
else
  chmod 600 "$tmp/key.pem"
  expect "sagad --tls-cert without --tls-key" 2 "$sagad" --workflows workflows --db "$tmp/x.db" --tls-cert "$tmp/cert.pem"
  has "says they go together" "go together" "$tmp/err"
  expect "sagad TLS beyond loopback without --auth" 1 "$sagad" --workflows workflows --db "$tmp/y.db" --listen 0.0.0.0:0 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem"
  has "refused: not loopback" "not a loopback address" "$tmp/err"
  expect "sagad with a certificate that is not PEM" 1 "$sagad" --workflows workflows --db "$tmp/z.db" --listen 127.0.0.1:0 --tls-cert "$tmp/a1.json" --tls-key "$tmp/key.pem"
  has "says not PEM" "not a PEM file" "$tmp/err"
  openssl genrsa -out "$tmp/other.pem" 2048 >/dev/null 2>&1
  expect "sagad with a key of another certificate" 1 "$sagad" --workflows workflows --db "$tmp/w.db" --listen 127.0.0.1:0 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/other.pem"
  has "says the key does not match" "does the key match the certificate" "$tmp/err"
  if ! start_sagad tls --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem"; then fail "sagad (tls) did not start"
  else
    has "log says https" "port $port, https" "$tmp/tls/sagad.log"
    export SAGAD_URL=https://127.0.0.1:$port
    expect "unknown CA: 5" 5 "$ctl" list
    has "TLS failure hints --cacert" "certificate.*--cacert" "$tmp/err"
    expect "--cacert" 0 "$ctl" list --cacert "$tmp/cert.pem"
    expect "SAGAD_CACERT and localhost" 0 env SAGAD_CACERT="$tmp/cert.pem" "$ctl" --server "https://localhost:$port" workflows
    expect "--insecure" 0 "$ctl" --insecure workflows -o json
    expect "plain http to the TLS port: 5" 5 "$ctl" --server "http://127.0.0.1:$port" list
    expect "orders create over TLS" 0 "$ctl" --cacert "$tmp/cert.pem" orders create --input @"$tmp/o1.json" --watch
    expect "orders get over TLS -o json" 0 "$ctl" --cacert "$tmp/cert.pem" orders get ORD-O1 -o json
    json "order over TLS" "d['status'] == 'approved'"
    expect "graph over TLS" 0 "$ctl" --cacert "$tmp/cert.pem" graph --workflow order_cancel --format svg -o "$tmp/t.svg"
  fi
fi

# Stopped gracefully, and (in a sanitized build) without a report.
stop_all
for log in "$tmp"/*/sagad.log; do
  if grep -Eq "Sanitizer|runtime error" "$log"; then fail "$log: $(grep -E -m3 "Sanitizer|runtime error" "$log")"
  elif grep -q '"stopped"' "$log"; then pass
  else fail "$log: sagad did not stop cleanly: $(tail -c 300 "$log")"; fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
