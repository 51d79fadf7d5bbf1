-- wrk script: every request carries X-Real-IP from clients.txt, in turn.
local clients = {}
for line in io.lines(os.getenv("CLIENTS")) do
  clients[#clients + 1] = line
end
local i = 0
request = function()
  i = i % #clients + 1
  return wrk.format("GET", "/btv/live/hls/ch1.m3u8?token=abc", { ["X-Real-IP"] = clients[i] })
end
