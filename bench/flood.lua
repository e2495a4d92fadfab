-- wrk script: POST /predict with a new random, well-formed API key on every call (an attacker
-- guessing keys), driven by bench/flood.py. done() writes the count of answers per status to
-- BENCH_OUT as JSON.

local threads = {}

function setup(thread)
   thread:set("id", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   math.randomseed(os.time() * 1000 + id)
   local path = os.getenv("BENCH_BODY_FILE")
   local file = assert(io.open(assert(path, "BENCH_BODY_FILE is needed"), "rb"))
   wrk.method = "POST"
   wrk.body = file:read("*a")
   file:close()
   wrk.headers["Content-Type"] = "application/json"
   statuses = {}
end

function request()
   wrk.headers["X-API-Key"] = string.format(
      "atk_%06x%06x.%08x%08x", math.random(0, 0xffffff), math.random(0, 0xffffff),
      math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
   return wrk.format()
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local out = os.getenv("BENCH_OUT")
   if not out then return end
   local merged = {}
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         merged[status] = (merged[status] or 0) + count
      end
   end
   local parts = {}
   for status, count in pairs(merged) do
      table.insert(parts, string.format('"%d": %d', status, count))
   end
   local file = assert(io.open(out, "w"))
   file:write("{" .. table.concat(parts, ", ") .. "}")
   file:close()
end
