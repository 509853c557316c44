-- wrk script: Kobo reading-state PUTs from many readers' Kobos, measured against REST
-- progress writes (progress.lua) on the same server (issue 11: at least 90 % of REST).
--
--   target/release/dogear-loadtest --url http://127.0.0.1:8080 --concurrency 256 \
--       --phases health --duration 1 --accounts-out /tmp/accounts.txt
--   ACCOUNTS=/tmp/accounts.txt wrk -t1 -c256 -d10s -s loadtest/wrk/kobo.lua http://127.0.0.1:8080
--
-- Each request is the next account's Kobo reporting its next place in its book (round robin
-- over every account): a bookmark, statistics and status, each a little later than the
-- last, as a device sends them while its reader turns pages. Bookmarks start at FROM
-- percent (20), ahead of what progress.lua's runs reach from 0 (under 1 %), so that they move
-- the books forward.

dofile("loadtest/wrk/count.lua")
count_answers('"CurrentBookmarkResult":{"Result":"Success"}', "bookmarks taken")

local accounts = {}
local step = 0
local start = 0
local from = tonumber(os.getenv("FROM") or "20") or 20

function init(args)
  local path = os.getenv("ACCOUNTS") or "/tmp/accounts.txt"
  for line in io.lines(path) do
    local book, kobo = line:match("^%S+ %S+ %S+ (%S+) (%S+)$")
    if kobo then
      accounts[#accounts + 1] = { book = book, path = kobo:match("^https?://[^/]+(/.*)$") }
    end
  end
  if #accounts == 0 then
    error("no account with a Kobo endpoint in " .. path)
  end
  -- Later runs against the same server must still move forward.
  start = os.time()
end

function request()
  step = step + 1
  local a = accounts[(step % #accounts) + 1]
  local n = math.floor(step / #accounts)
  -- A millisecond later each round: the server clamps device times far ahead of its clock.
  local at = os.date("!%Y-%m-%dT%H:%M:%S", start + math.floor(n / 1000)) ..
    string.format(".%03dZ", n % 1000)
  local body = string.format(
    '{"ReadingStates":[{"EntitlementId":"%s","LastModified":"%s","PriorityTimestamp":"%s",' ..
    '"StatusInfo":{"LastModified":"%s","Status":"Reading"},' ..
    '"Statistics":{"LastModified":"%s","SpentReadingMinutes":%d,"RemainingTimeMinutes":60},' ..
    '"CurrentBookmark":{"LastModified":"%s","ProgressPercent":%.4f,' ..
    '"ContentSourceProgressPercent":%d,"Location":{"Value":"kobo.%d.1","Type":"KoboSpan",' ..
    '"Source":"OEBPS/Text/chapter05.xhtml"}}}]}',
    a.book, at, at, at, at, n % 600, at, math.min(from + (n % 800000) / 10000, 100), n % 100,
    n % 500)
  return wrk.format("PUT", a.path .. "/v1/library/" .. a.book .. "/state",
    { ["Content-Type"] = "application/json" }, body)
end
