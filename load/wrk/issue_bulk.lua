-- wrk: POST /issuance/credentials/batch, BULK_SIZE (100) credentials no one has
-- issued in every request; counts the items answered 201 (report.lua's items_ok).
dofile((os.getenv("WRK_DIR") or "load/wrk") .. "/report.lua")
local counter = 0
local prefix
local size = tonumber(os.getenv("BULK_SIZE") or "100")
bulk_items = size

function setup(thread)
  thread:set("tid", tostring(math.random(1, 1e9)))
  bulk_track(thread)
end

function init(args)
  prefix = (tid or tostring(math.random(1, 1e9))) .. "-" .. tostring(os.time())
end

-- An issuer's key, sent when set (tasks with AUTH_MODE=off need none).
send_key("ISSUER_KEY")

function request()
  local items = {}
  for i = 1, size do
    counter = counter + 1
    local key = prefix .. "-" .. counter
    items[i] = '{"name":"wrk ' .. key .. '","email":"wrk' .. counter .. '@example.com","credentialType":"limit",' ..
      '"metadata":{"run":"' .. prefix .. '","n":' .. counter .. '}}'
  end
  return wrk.format(nil, "/issuance/credentials/batch", nil, '{"credentials":[' .. table.concat(items, ",") .. ']}')
end

function response(status, headers, body)
  bulk_count(body, '{"status":201')
end
