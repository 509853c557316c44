-- wrk script: durable progress writes from many readers, the light-client measurement of
-- issue 11 (the project's own generator spends too much of two cores itself).
--
--   target/release/dogear-loadtest --url http://127.0.0.1:8080 --concurrency 256 \
--       --phases health --duration 1 --accounts-out /tmp/accounts.txt
--   ACCOUNTS=/tmp/accounts.txt wrk -t1 -c256 -d10s -s loadtest/wrk/progress.lua http://127.0.0.1:8080
--
-- Each request is the next account's next position (round robin over every account), with
-- a fresh event id, so each reader moves forward on its book. Event ids count up within a
-- run, as time-ordered ids (UUIDv7) do; IDS=random makes them random, as UUIDv4 clients do.
-- Positions start at FROM percent (0).

dofile("loadtest/wrk/count.lua")
count_answers('"applied":true', "applied writes")

local accounts = {}
local step = 0
local seed = 0
local random_ids = false
-- FROM: the percentage a run starts at, so that a run after others still moves forward.
local from = tonumber(os.getenv("FROM") or "0") or 0

function init(args)
  local path = os.getenv("ACCOUNTS") or "/tmp/accounts.txt"
  for line in io.lines(path) do
    local base, token, device, book = line:match("^(%S+) (%S+) (%S+) (%S+)")
    if base then
      accounts[#accounts + 1] = { token = token, device = device, book = book }
    end
  end
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0))
  seed = math.random(0, 0x7fffffff)
  random_ids = os.getenv("IDS") == "random"
end

function request()
  step = step + 1
  local a = accounts[(step % #accounts) + 1]
  local n = math.floor(step / #accounts)
  local id = string.format("%08x-0000-4000-8000-%012x", seed, step)
  if random_ids then
    id = string.format("%08x-%04x-4%03x-8%03x-%06x%06x", math.random(0, 0x7fffffff),
      math.random(0, 0xffff), math.random(0, 0xfff), math.random(0, 0xfff),
      math.random(0, 0xffffff), step % 0x1000000)
  end
  local body = string.format(
    '{"event_id":"%s","device_id":"%s","percent":%.4f,' ..
    '"locator":"epubcfi(/6/4!/4/2/%d)","client_ts":"2026-11-23T07:28:28.123Z"}',
    id, a.device, math.min(from + (n % 1000000) / 10000, 100), n)
  return wrk.format("POST", "/v1/books/" .. a.book .. "/progress",
    { ["Authorization"] = "Bearer " .. a.token, ["Content-Type"] = "application/json" }, body)
end
