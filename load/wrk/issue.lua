-- wrk: POST /issuance/credentials, a credential no one has issued in every request.
local counter = 0
local prefix

function setup(thread)
  thread:set("tid", tostring(math.random(1, 1e9)))
end

function init(args)
  prefix = (tid or tostring(math.random(1, 1e9))) .. "-" .. tostring(os.time())
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- An issuer's key, sent when set (tasks with AUTH_MODE=off need none).
local key = os.getenv("ISSUER_KEY")
if key and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

function request()
  counter = counter + 1
  local key = prefix .. "-" .. counter
  return wrk.format(nil, "/issuance/credentials", nil,
    '{"name":"wrk ' .. key .. '","email":"wrk' .. counter .. '@example.com","credentialType":"limit",' ..
    '"metadata":{"run":"' .. prefix .. '","n":' .. counter .. '}}')
end

dofile((os.getenv("WRK_DIR") or "load/wrk") .. "/report.lua")
