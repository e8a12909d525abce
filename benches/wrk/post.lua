-- benches/compare's proxy-post: every request is a POST with a 1 MiB body (Content-Length),
-- so the proxy relays 1 MiB upstream per request; the upstream reads all of it, then
-- answers 200 with no body. Usage: wrk -t2 -c16 -s benches/wrk/post.lua URL [-- BYTES]
-- Prints report.lua's BENCH line.

local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "report.lua")

local size = 1048576

function init(args)
   size = tonumber(args[1]) or size
   wrk.method = "POST"
   wrk.body = string.rep("x", size)
   wrk.headers["Content-Type"] = "application/octet-stream"
end
