-- wrk script for every load scenario: cycles through pre-built requests and prints one
-- JSON line of results (with p99.9, which `wrk --latency` does not show).
--
-- Usage: wrk ... -s wrk_bench.lua URL -- REQUESTS_FILE
-- REQUESTS_FILE: one request per line, its extra headers as "Name: value" joined by tabs.
-- The requests are formatted once in init(), so per request wrk only hands out a string.

local reqs = {}
local n = 0
local i = 0

function init(args)
  local path = args[1]
  if path == nil then
    error("wrk_bench.lua needs a requests file after --")
  end
  for line in io.lines(path) do
    if #line > 0 then
      local headers = {}
      for field in string.gmatch(line, "[^\t]+") do
        local name, value = string.match(field, "^([^:]+):%s*(.*)$")
        headers[name] = value
      end
      n = n + 1
      reqs[n] = wrk.format("GET", "/", headers)
    end
  end
  if n == 0 then
    error("no requests in " .. path)
  end
end

function request()
  i = i + 1
  if i > n then
    i = 1
  end
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.2f,"max":%d,"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p99.9":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
