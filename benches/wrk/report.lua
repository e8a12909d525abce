-- wrk reporting hook used by benches/compare (headers are passed with wrk -H).
-- Prints one machine-readable line at the end of a run, e.g.
--   BENCH requests=123 duration_us=5000000 bytes=456 ... p99_us=789
-- errors: connect/read/write/timeout are socket errors; status counts responses
-- with a status >= 400 (wrk's "Non-2xx or 3xx responses").
-- Usage by hand: wrk -t2 -c64 -d5s -s benches/wrk/report.lua http://127.0.0.1:8080/small.html

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
      "mean_us=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d\n",
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.mean, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max))
end
