-- Shared by the wrk scripts, which load it first: send_key, read_ids, and one
-- machine-readable line for load/limit.sh at the end (latencies in
-- microseconds; non2xx counts answers other than 2xx/3xx). A bulk
-- script sets bulk_items and calls bulk_track in setup() and bulk_count in
-- response(); the line then also says how many items each request carried
-- ("items") and how many of them were answered as expected ("items_ok").
local tracked = {}

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

-- The credential ids in IDS_FILE (one per line), for the verification scripts.
function read_ids()
  local ids = {}
  for line in io.lines(os.getenv("IDS_FILE") or "target/limit/ids.txt") do
    ids[#ids + 1] = line
  end
  return ids
end

-- Sends the API key in the environment variable `var` when it is set (tasks
-- with AUTH_MODE=off need none).
function send_key(var)
  local key = os.getenv(var)
  if key and key ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. key
  end
end
items_ok = 0

function bulk_track(thread)
  tracked[#tracked + 1] = thread
end

function bulk_count(body, pattern)
  local from, n = 1, 0
  while true do
    local at = string.find(body, pattern, from, true)
    if not at then break end
    n = n + 1
    from = at + #pattern
  end
  items_ok = items_ok + n
end

function done(summary, latency, requests)
  local e = summary.errors
  local bulk = ""
  if bulk_items then
    local ok = 0
    for _, thread in ipairs(tracked) do
      ok = ok + (thread:get("items_ok") or 0)
    end
    bulk = string.format(',"items":%d,"items_ok":%d', bulk_items, ok)
  end
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d%s}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, bulk))
end
