-- wrk: POST /verification/credentials for ids read from IDS_FILE (one per line).
local ids = {}
local function load_ids()
  local path = os.getenv("IDS_FILE") or "target/limit/ids.txt"
  for line in io.lines(path) do
    ids[#ids + 1] = line
  end
end
load_ids()

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- A verifier's key, sent when set: without one a task serves ANONYMOUS_RATE_LIMIT
-- (20) requests/s per address and answers 429 past it.
local key = os.getenv("VERIFIER_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

function request()
  local id = ids[math.random(#ids)]
  return wrk.format(nil, "/verification/credentials", nil, '{"id":"' .. id .. '"}')
end

dofile((os.getenv("WRK_DIR") or "load/wrk") .. "/report.lua")
