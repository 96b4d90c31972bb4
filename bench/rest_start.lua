-- wrk script for bench/rest.sh: starts of demo_order_test through REST, each with its
-- own Idempotency-Key and order_id, so every request creates a saga (none is a replay).
-- Usage: wrk ... -s bench/rest_start.lua URL -- RUN_TAG
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  tag = args[1] or "0"
  n = 0
end

function request()
  n = n + 1
  local key = string.format("bench-%s-%d-%d", tag, tid, n)
  return wrk.format("POST", "/v1/workflows/demo_order_test/instances",
    {["Content-Type"] = "application/json", ["Idempotency-Key"] = key},
    string.format('{"order_id":"%s"}', key))
end
