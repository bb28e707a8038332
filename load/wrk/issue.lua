-- wrk: POST /issuance/credentials, a credential no one has issued in every request.
dofile((os.getenv("WRK_DIR") or "load/wrk") .. "/report.lua")
local counter = 0
local prefix

function setup(thread)
  thread:set("tid", tostring(math.random(1, 1e9)))
end

function init(args)
  prefix = (tid or tostring(math.random(1, 1e9))) .. "-" .. tostring(os.time())
end

-- An issuer's key, sent when set (tasks with AUTH_MODE=off need none).
send_key("ISSUER_KEY")

function request()
  counter = counter + 1
  local key = prefix .. "-" .. counter
  return wrk.format(nil, "/issuance/credentials", nil,
    '{"name":"wrk ' .. key .. '","email":"wrk' .. counter .. '@example.com","credentialType":"limit",' ..
    '"metadata":{"run":"' .. prefix .. '","n":' .. counter .. '}}')
end
