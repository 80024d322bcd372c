-- Prelude "limits" (admit.lua, admit_team.lua): prepended by the loader
-- (gateway/store/store.py, load_script) to a script whose first line names it
-- ("--! prelude: limits"), since Redis runs each script whole and has no includes.
-- Local definitions only: it reads and writes nothing by itself.

-- Refusal of one side's limits (admit.lua, admit_team.lua), or nil: ARGV[base .. base + 4]
-- are its rpm, tpm, max_concurrent, daily and monthly budget (0: none). open, requests,
-- used and held are functions, so a count is read only if its limit is set. With money
-- (the request is paid from this side's balance, or checked against its budgets) and a
-- balance, a balance that cannot cover the credits is a "quota" refusal (after the rate
-- limits, before the budgets). A refusal is {reason, current, limit, whose}.
local function refusal(whose, base, money, credits, tokens, open, requests, used, held,
                       balance, today_key, month_key)
  local concurrent = tonumber(ARGV[base + 2])
  if concurrent > 0 then
    local n = open()
    if n >= concurrent then return {'concurrency', n, concurrent, whose} end
  end
  local rpm = tonumber(ARGV[base])
  if rpm > 0 then
    local n = requests()
    if n + 1 > rpm then return {'requests', n, rpm, whose} end
  end
  local tpm = tonumber(ARGV[base + 1])
  if tpm > 0 then
    local n = used()
    if n + tokens > tpm then return {'tokens', n, tpm, whose} end
  end
  if not money then return nil end
  if balance and balance - held() < credits then return {'quota', balance, held(), whose} end
  local daily = tonumber(ARGV[base + 3])
  if daily > 0 then
    local today = tonumber(redis.call('GET', today_key) or '0')
    if today + held() + credits > daily then return {'daily_budget', today, daily, whose} end
  end
  local monthly = tonumber(ARGV[base + 4])
  if monthly > 0 then
    local month = tonumber(redis.call('GET', month_key) or '0')
    if month + held() + credits > monthly then
      return {'monthly_budget', month, monthly, whose}
    end
  end
  return nil
end
