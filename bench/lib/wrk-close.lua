-- wrk script: wrk-report.lua (the JSON report in $WRK_REPORT) with `Connection: close` on every
-- request, so the server closes each connection after one answer and wrk opens a new one: one
-- connection per request. (wrk times a request from its first byte written, after the connect.)
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk-report.lua")
wrk.headers["Connection"] = "close"
