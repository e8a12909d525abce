-- Background load of benches/compare's cold scenario: every request asks for a random file of
-- the cold set (/cold/000.bin .. /cold/NNN.bin, 4 MiB each) whose pages a helper keeps evicting.
-- Usage: wrk -t1 -c8 -s benches/wrk/cold.lua URL/cold/ -- COUNT
-- Prints report.lua's BENCH line; non-2xx answers count as status errors there.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local count, prefix = 256, "/cold/"

function init(args)
   count = tonumber(args[1]) or count
   prefix = wrk.path
   -- wrk seeds every thread's Lua state the same way: mix in the thread's address
   math.randomseed(os.time() + tonumber(tostring(wrk.thread):match("0x(%x+)") or "0", 16) % 100000)
end

function request()
   return wrk.format("GET", string.format("%s%03d.bin", prefix, math.random(0, count - 1)))
end
