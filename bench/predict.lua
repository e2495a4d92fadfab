-- wrk script for POST /predict, driven by bench/run.py (usable by hand too):
--
--   BENCH_BODY_FILE=employee.json BENCH_API_KEY=<key> BENCH_OUT=/tmp/run.json \
--     wrk -t2 -c16 -d10s --latency -s bench/predict.lua http://127.0.0.1:3000/predict [<key>]
--
-- The key comes from the first script argument (after the URL) or BENCH_API_KEY.
-- Each thread counts the requests it sent and the answers it got, per status, and keeps the
-- prediction_id of every 2xx answer. done() writes, when BENCH_OUT is set:
--   BENCH_OUT        one JSON object: counts, wrk's errors, latency percentiles (ms)
--   BENCH_OUT.ids    the prediction_id of each 2xx answer, one per line
-- so the caller can check that every answer has its row and every row its answer.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   local key = args[1] or os.getenv("BENCH_API_KEY")
   local path = os.getenv("BENCH_BODY_FILE")
   assert(key and key ~= "", "an API key is needed: script argument or BENCH_API_KEY")
   assert(path, "BENCH_BODY_FILE (a JSON employee) is needed")
   local file = assert(io.open(path, "rb"))
   local body = file:read("*a")
   file:close()
   wrk.method = "POST"
   wrk.body = body
   wrk.headers["Content-Type"] = "application/json"
   wrk.headers["X-API-Key"] = key
   prepared = wrk.format()
   sent = 0
   statuses = {}
   ids = {}
end

function request()
   sent = sent + 1
   return prepared
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status >= 200 and status < 300 then
      ids[#ids + 1] = string.match(body, '"prediction_id"%s*:%s*"([%x%-]+)"') or "?"
   end
end

function done(summary, latency, requests)
   local total_sent, by_status, all_ids = 0, {}, {}
   for _, thread in ipairs(threads) do
      total_sent = total_sent + thread:get("sent")
      for status, count in pairs(thread:get("statuses")) do
         by_status[status] = (by_status[status] or 0) + count
      end
      for _, id in ipairs(thread:get("ids")) do
         all_ids[#all_ids + 1] = id
      end
   end

   local counts = {}
   for status, count in pairs(by_status) do
      counts[#counts + 1] = string.format('"%d": %d', status, count)
   end
   local function ms(us) return us / 1000.0 end
   local e = summary.errors
   local json = string.format(
      '{"duration_s": %.6f, "requests": %d, "sent": %d, "bytes": %d, "statuses": {%s}, '
         .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
         .. '"latency_ms": {"mean": %.3f, "stdev": %.3f, "max": %.3f, '
         .. '"p50": %.3f, "p75": %.3f, "p90": %.3f, "p99": %.3f, "p99.9": %.3f}}',
      summary.duration / 1e6, summary.requests, total_sent, summary.bytes,
      table.concat(counts, ", "),
      e.connect, e.read, e.write, e.status, e.timeout,
      ms(latency.mean), ms(latency.stdev), ms(latency.max),
      ms(latency:percentile(50)), ms(latency:percentile(75)), ms(latency:percentile(90)),
      ms(latency:percentile(99)), ms(latency:percentile(99.9)))

   local out = os.getenv("BENCH_OUT")
   if out then
      local file = assert(io.open(out, "w"))
      file:write(json, "\n")
      file:close()
      file = assert(io.open(out .. ".ids", "w"))
      file:write(table.concat(all_ids, "\n"), "\n")
      file:close()
   else
      io.write(json, "\n")
   end
end
