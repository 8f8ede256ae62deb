-- bench/server_checkin.lua - wrk script of bench/server.sh: device
-- check-ins (docs/device-api.md) from a whole fleet, each device with its
-- own token.
--
--   wrk -t2 -c32 -d10s --latency -s bench/server_checkin.lua URL -- \
--       TOKENS_FILE WRK_THREADS [START]
--
-- TOKENS_FILE: one "DEVICE_ID TOKEN" per line. Thread t of T (1-based)
-- takes devices START+t, START+t+T, START+t+2T, ... (START: 0 unless
-- given; bench/server.sh gives the count of check-ins already made, so
-- each run goes on where the one before stopped), so together the
-- threads go through the fleet in order, each device once per lap (a 10 s
-- run at 10,000 check-ins/s is one lap of 100,000 devices), and wrap
-- around.
--
-- Every request is POST /api/v1/devices/{id}/checkin with that device's
-- bearer token and the body an agent on version 1.0.0 sends. The same
-- requests go to nginx for the ceiling (it answers them with a static
-- file). response() counts answers that are not 200 (by status, with the
-- first such body) and offers ("action":"update"); done() prints one
-- machine-readable line, NBRESULT key=value ..., that bench/server.sh
-- parses.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

local body = '{"hw_rev":"sim-1","version":"1.0.0","security_version":1,' ..
   '"slots":[{"slot":0,"state":"CONFIRMED","version":"1.0.0",' ..
   '"security_version":1},{"slot":1,"state":"EMPTY"}]}'

function init(args)
   local path, nthreads = args[1], tonumber(args[2] or "1")
   local start = tonumber(args[3] or "0")
   ids, toks = {}, {}
   for line in io.lines(path) do
      local id, tok = line:match("^(%S+) (%S+)$")
      if id then
         ids[#ids + 1] = id
         toks[#toks + 1] = tok
      end
   end
   n = #ids
   if n == 0 then
      error("server_checkin.lua: no devices in " .. tostring(path))
   end
   step = nthreads
   pos = (start % n) + tid - step   -- request() adds step first
   non200, offers, nones = 0, 0, 0
   bad = {}                   -- status -> count
   first_bad = ""
   headers = {["Content-Type"] = "application/json"}
end

function request()
   pos = pos + step
   if pos > n then
      pos = ((pos - 1) % n) + 1
   end
   headers["Authorization"] = "Bearer " .. toks[pos]
   return wrk.format("POST", "/api/v1/devices/" .. ids[pos] .. "/checkin",
                     headers, body)
end

function response(status, hdrs, b)
   if status ~= 200 then
      non200 = non200 + 1
      local k = tostring(status)
      bad[k] = (bad[k] or 0) + 1
      if first_bad == "" then
         first_bad = (b or ""):sub(1, 200)
      end
   elseif b and b:find('"action":"update"', 1, true) then
      offers = offers + 1
   elseif b and b:find('"action":"none"', 1, true) then
      nones = nones + 1
   end
end

function done(summary, latency, requests)
   local tn, to, tnone, tbad, fb = 0, 0, 0, {}, ""
   for _, t in ipairs(threads) do
      tn = tn + (t:get("non200") or 0)
      to = to + (t:get("offers") or 0)
      tnone = tnone + (t:get("nones") or 0)
      for k, v in pairs(t:get("bad") or {}) do
         tbad[k] = (tbad[k] or 0) + v
      end
      if fb == "" then
         fb = t:get("first_bad") or ""
      end
   end
   local codes = {}
   for k, v in pairs(tbad) do
      codes[#codes + 1] = k .. ":" .. v
   end
   table.sort(codes)
   local e = summary.errors
   io.write(string.format(
      "NBRESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d " ..
      "p99_us=%d max_us=%d non200=%d offers=%d nones=%d connect=%d " ..
      "read=%d write=%d timeout=%d codes=%s\n",
      summary.requests, summary.duration,
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, tn, to, tnone,
      e.connect, e.read, e.write, e.timeout,
      #codes > 0 and table.concat(codes, ",") or "-"))
   -- The first refusal, on a line of its own (it may contain blanks).
   io.write("NBFIRSTBAD " .. fb:gsub("[\r\n]", " ") .. "\n")
end
