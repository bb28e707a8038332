-- wrk: POST /verification/credentials/batch, BULK_SIZE (100) ids read from
-- IDS_FILE in every request; counts the items answered 200 (report.lua's items_ok).
dofile((os.getenv("WRK_DIR") or "load/wrk") .. "/report.lua")
local ids = read_ids()
local size = tonumber(os.getenv("BULK_SIZE") or "100")
bulk_items = size

function setup(thread)
  bulk_track(thread)
end

-- A verifier's key: the bulk route needs one.
send_key("VERIFIER_KEY")

function request()
  local items = {}
  for i = 1, size do
    items[i] = '{"id":"' .. ids[math.random(#ids)] .. '"}'
  end
  return wrk.format(nil, "/verification/credentials/batch", nil, '{"credentials":[' .. table.concat(items, ",") .. ']}')
end

function response(status, headers, body)
  bulk_count(body, '{"status":200')
end
