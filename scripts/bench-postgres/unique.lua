-- wrk script: the shared harness's 1 KiB customer event, with a customer id
-- of its own on every request (cus_<thread>_<n>), so each event is a row
-- of its own. KEYS=N reuses N ids per thread instead (the rows exist: the
-- update path). The same ids come back on every run.
local function readall(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local body = readall(assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE"))
local keys = tonumber(os.getenv("KEYS") or "0")
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local n = 0
function request()
  n = n + 1
  local k = n
  if keys > 0 then k = n % keys end
  local b = body:gsub("cus_QbEnchMark0001", string.format("cus_%d_%d", tid, k), 1)
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, b)
end

function done(summary, latency, requests)
  io.write(string.format("RESULT rps=%.1f p99_ms=%.2f errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
