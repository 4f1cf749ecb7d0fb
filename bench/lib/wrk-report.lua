-- wrk script for the benchmarks: plain GET / on keep-alive connections; at the end, writes the
-- summary, the error counts and the whole latency histogram (microseconds -> count) as JSON to
-- $WRK_REPORT, so that several wrk runs can be merged into one distribution.
done = function(summary, latency, requests)
  local path = os.getenv("WRK_REPORT")
  if path == nil then return end
  local f = io.open(path, "w")
  local e = summary.errors
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "histogram": {',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout))
  -- wrk 4.1: #latency is the number of distinct latencies and latency(i) returns the i-th one
  -- (microseconds) and its count.
  local first = true
  if summary.requests > 0 then
    for i = 1, #latency do
      local us, n = latency(i)
      if n ~= nil and n > 0 then
        if not first then f:write(",") end
        f:write(string.format('"%d": %d', us, n))
        first = false
      end
    end
  end
  f:write("}}\n")
  f:close()
end
