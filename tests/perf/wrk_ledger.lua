-- wrk script of tests/perf/bench_compare.py: replays pre-signed requests and keeps a ledger.
--
--   wrk -t1 -cC -dDs --latency -s wrk_ledger.lua URL -- REQUESTS LEDGER [LIMIT]
--
-- REQUESTS: one request a line, "<hex signature>\t<JSON body>" (signed ahead by Python, so no
-- HMAC is computed here). Sent in order; past the end it starts again (those are duplicates).
-- LEDGER: each thread appends "<status>\t<eventId>\t<0|1 duplicate>" per response to
-- LEDGER.<thread number>, line-buffered, so nothing is lost when wrk exits without closing it.
-- LIMIT: each thread stops after that many responses (wrk itself still waits for -d or SIGINT,
-- which bench_compare sends once the ledger is complete). 0 or absent: no limit.
-- done() prints one line "BENCH_JSON {...}" with the totals and latency percentiles (µs).

local thread_count = 0

function setup(thread)
  thread:set("thread_number", thread_count)
  thread_count = thread_count + 1
end

local requests = {}
local next_index = 0
local ledger = nil
local limit = 0
local responses = 0

function init(args)
  local headers = { ["Content-Type"] = "application/json" }
  for line in io.lines(args[1]) do
    local signature, body = line:match("^(%x+)\t(.+)$")
    headers["X-Webhook-Signature"] = signature
    requests[#requests + 1] = wrk.format("POST", nil, headers, body)
  end
  ledger = assert(io.open(args[2] .. "." .. thread_number, "w"))
  ledger:setvbuf("line")
  limit = tonumber(args[3] or "0")
end

function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end

function response(status, headers, body)
  local event_id = body:match('"eventId":"([^"]*)"') or "-"
  local duplicate = body:find('"duplicate":true', 1, true) and 1 or 0
  ledger:write(status, "\t", event_id, "\t", duplicate, "\n")
  responses = responses + 1
  if limit > 0 and responses >= limit then
    wrk.thread:stop()
  end
end

function done(summary, latency)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
      .. '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max
  ))
end
