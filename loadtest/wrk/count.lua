-- Shared by progress.lua and kobo.lua (loaded by path from the repository's root, where
-- they are run): counts the answers that show a write took effect, prints the first three
-- errors, and reports the count at the end.

local threads = {}
function setup(thread)
  threads[#threads + 1] = thread
end

-- Defines wrk's `response` and `done`: an answer is counted when it is a 200 whose body
-- holds `pattern` (plain text); the total is printed as "`label`: N (N/s)".
function count_answers(pattern, label)
  errors = 0
  counted = 0
  function response(status, headers, body)
    if status == 200 and body:find(pattern, 1, true) then
      counted = counted + 1
    end
    if status ~= 200 then
      errors = errors + 1
      if errors <= 3 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
    end
  end
  function done(summary, latency, requests)
    local n = 0
    for _, t in ipairs(threads) do n = n + (t:get("counted") or 0) end
    io.write(string.format("%s: %d (%.0f/s)\n", label, n, n / (summary.duration / 1e6)))
  end
end
