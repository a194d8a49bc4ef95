-- wrk script of bench/tracking.py: each request is the next path of a file (one per line), and
-- the run ends with one line "WRKJSON {...}": latency percentiles, responses by status, and
-- how many requests were written.
--
--   wrk -t2 -c32 -d10s -s bench/wrk_paths.lua http://127.0.0.1:PORT -- PATHS_FILE THREADS
--
-- Thread k of THREADS cycles through its own contiguous slice of the file, so that until a
-- slice is used up every request names a different delivery ("wrapped" says whether one was).
-- Requests are built in init(), not per request: building them is what would be measured.

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

function init(args)
   local paths = {}
   for line in io.lines(args[1]) do
      if #line > 0 then
         table.insert(paths, line)
      end
   end
   local count = tonumber(args[2])
   local first = math.floor(#paths * id / count) + 1
   local last = math.max(first, math.floor(#paths * (id + 1) / count))
   prepared = {}
   for index = first, last do
      table.insert(prepared, wrk.format("GET", paths[index]))
   end
   position = 0
   wrapped = false
   -- wrk calls request() once in thread 0 to check the script before the run: "sent" may be
   -- one too many there, which only loosens the bound it is used for.
   sent = 0
   statuses = {}
end

function request()
   position = position + 1
   if position > #prepared then
      position = 1
      wrapped = true
   end
   sent = sent + 1
   return prepared[position]
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   local sent, wrapped, statuses = 0, false, {}
   for _, thread in ipairs(threads) do
      sent = sent + thread:get("sent")
      wrapped = wrapped or thread:get("wrapped")
      for status, count in pairs(thread:get("statuses")) do
         statuses[status] = (statuses[status] or 0) + count
      end
   end
   local parts = {}
   for status, count in pairs(statuses) do
      table.insert(parts, string.format('"%d": %d', status, count))
   end
   local errors = summary.errors
   io.write(string.format(
      'WRKJSON {"duration_us": %d, "requests": %d, "sent": %d, "wrapped": %s, '
         .. '"statuses": {%s}, "errors": {"connect": %d, "read": %d, "write": %d, '
         .. '"timeout": %d}, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
      summary.duration, summary.requests, sent, tostring(wrapped), table.concat(parts, ", "),
      errors.connect, errors.read, errors.write, errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max
   ))
end
