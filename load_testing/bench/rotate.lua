-- wrk script: every request carries X-Real-IP from clients.txt, in turn.
-- With CLOSE=1, every request asks for its connection to be closed (one
-- request per connection: what new connections, or TLS handshakes, cost).
local clients = {}
for line in io.lines(os.getenv("CLIENTS")) do
  clients[#clients + 1] = line
end
local close = os.getenv("CLOSE") == "1"
local i = 0
request = function()
  i = i % #clients + 1
  local headers = { ["X-Real-IP"] = clients[i] }
  if close then
    headers["Connection"] = "close"
  end
  return wrk.format("GET", "/btv/live/hls/ch1.m3u8?token=abc", headers)
end
