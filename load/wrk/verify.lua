-- wrk: POST /verification/credentials for ids read from IDS_FILE (one per line).
dofile((os.getenv("WRK_DIR") or "load/wrk") .. "/report.lua")
local ids = read_ids()

-- A verifier's key, sent when set: without one a task serves ANONYMOUS_RATE_LIMIT
-- (20) requests/s per address and answers 429 past it.
send_key("VERIFIER_KEY")

function request()
  local id = ids[math.random(#ids)]
  return wrk.format(nil, "/verification/credentials", nil, '{"id":"' .. id .. '"}')
end
