-- wrk script for bench/rest.sh: GET /v1/instances/{id} over a list of existing ids.
-- Usage: wrk ... -s bench/rest_get.lua URL -- IDS_FILE (one instance id per line)
local ids = {}

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then
      ids[#ids + 1] = line
    end
  end
  math.randomseed(os.time() + #ids)
end

function request()
  return wrk.format("GET", "/v1/instances/" .. ids[math.random(#ids)])
end
