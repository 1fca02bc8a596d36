-- wrk script for benchmarks/ingest.py: the same requests its Python client sends.
--
--   wrk -t2 -c16 -d10s -s benchmarks/ingest.lua http://127.0.0.1:8080 -- releasebits TOKEN 300 RUN
--   wrk -t2 -c16 -d10s -s benchmarks/ingest.lua http://127.0.0.1:9091 -- pushgateway 300
--
-- releasebits: POST /components/svc-N/deployments, a JSON deployment with a Bearer token. RUN
-- (default 1) is the versions' major number: each run against one database passes its own, so
-- no run deploys the versions of an earlier one again (each would be a rollback, issue 16).
-- pushgateway: POST /metrics/job/deploy/component/svc-N/stage/S, what a CI job pushes today.
-- Each thread counts its 2xx answers; done() prints one JSON line (prefixed "WRK_RESULT ") with
-- requests, 2xx, non-2xx, socket errors and latency percentiles in microseconds.

local threads = {}
local mode, token, components, run = "releasebits", "", 300, 1

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "releasebits"
  if mode == "releasebits" then
    token = args[2] or ""
    components = tonumber(args[3] or "300")
    run = tonumber(args[4] or "1")
  else
    components = tonumber(args[2] or "300")
  end
  counter = id * 1000003  -- threads post to different components and versions
  ok = 0
  bad = 0
end

local function deployment(i)
  local stage = (i % 4 == 0) and "staging" or "production"
  local result = (i % 10 == 0) and "failed" or "success"
  return string.format(
    '{"version":"v%d.%d.%d","stage":"%s","host":"web-%d","result":"%s",' ..
    '"commit_sha":"%010x","started_at":"2024-05-01T12:00:00Z","meta_data":{"pipeline":"%d"}}',
    run, math.floor(i / 100) % 1000, i % 100, stage, i % 8, result, (i * 2654435761) % 1099511627776, i)
end

local function push(i)
  local stage = (i % 4 == 0) and "staging" or "production"
  local result = (i % 10 == 0) and "failure" or "success"
  local body = string.format(
    "# TYPE deployment_last_timestamp_seconds gauge\n" ..
    'deployment_last_timestamp_seconds{result="%s"} %d\n' ..
    "# TYPE deployment_duration_seconds gauge\n" ..
    "deployment_duration_seconds %d\n" ..
    "# TYPE deployed_version_info gauge\n" ..
    'deployed_version_info{version="v1.%d.%d",commit_sha="%010x"} 1\n',
    result, os.time(), (i % 600) + 1, math.floor(i / 100) % 1000, i % 100, i)
  return stage, body
end

function request()
  counter = counter + 1
  local i = counter
  local component = "svc-" .. (i % components)
  if mode == "releasebits" then
    return wrk.format("POST", "/components/" .. component .. "/deployments", {
      ["Authorization"] = "Bearer " .. token,
      ["Content-Type"] = "application/json",
    }, deployment(i))
  end
  local stage, body = push(i)
  return wrk.format("POST", "/metrics/job/deploy/component/" .. component .. "/stage/" .. stage,
    { ["Content-Type"] = "text/plain; version=0.0.4" }, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local ok_total, bad_total = 0, 0
  for _, thread in ipairs(threads) do
    ok_total = ok_total + thread:get("ok")
    bad_total = bad_total + thread:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"ok":%d,"non2xx":%d,"socket_errors":%d,"duration_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, ok_total, bad_total, e.connect + e.read + e.write + e.timeout,
    summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
