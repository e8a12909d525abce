-- Background load of benches/compare's auth-mixed scenario: every request carries the right
-- user with a password never sent before, so each one costs the server a full bcrypt check
-- (vireo caches only successes, nginx caches nothing; a fresh password defeats any cache).
-- Usage: wrk -t1 -c8 -s benches/wrk/auth_wrong.lua URL -- USER
-- Prints report.lua's BENCH line plus "AUTHBG unexpected=N" (responses other than 401).

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")
local report_done = done

local b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
   local out = {}
   for i = 1, #s, 3 do
      local a, b, c = s:byte(i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local q = {math.floor(n / 262144) % 64, math.floor(n / 4096) % 64, math.floor(n / 64) % 64, n % 64}
      out[#out + 1] = b64:sub(q[1] + 1, q[1] + 1) .. b64:sub(q[2] + 1, q[2] + 1) ..
         (b and b64:sub(q[3] + 1, q[3] + 1) or "=") .. (c and b64:sub(q[4] + 1, q[4] + 1) or "=")
   end
   return table.concat(out)
end

local threads, next_id = {}, 0

function setup(thread)
   next_id = next_id + 1
   thread:set("id", next_id)
   threads[#threads + 1] = thread
end

local user, n, id = "bench", 0, 0
unexpected = 0

function init(args)
   user = args[1] or user
   id = wrk.thread:get("id") or 0
end

function request()
   n = n + 1
   local auth = base64(string.format("%s:wrong-%d-%d", user, id, n))
   return wrk.format("GET", nil, {["Authorization"] = "Basic " .. auth})
end

function response(status, headers, body)
   if status ~= 401 then
      unexpected = unexpected + 1
   end
end

function done(summary, latency, requests)
   report_done(summary, latency, requests)
   local total = 0
   for _, t in ipairs(threads) do
      total = total + (t:get("unexpected") or 0)
   end
   io.write(string.format("AUTHBG unexpected=%d\n", total))
end
