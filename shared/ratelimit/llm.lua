-- Shared tokens-per-minute and requests-per-minute budget of one LLM scope (org/project/model).
--
-- KEYS[1]  hash: tl, rl (token and request levels), ts (last refill, microseconds),
--          tcap, rcap (limits learnt from x-ratelimit-limit-* headers), cool (no sends before)
-- ARGV[1]  operation: reserve | settle | calibrate | penalize
-- ARGV[2]  configured tokens per minute (0 = unknown/unlimited until learnt)
-- ARGV[3]  configured requests per minute (0 = unknown/unlimited until learnt)
-- ARGV[4]  headroom fraction kept unused (0.03 = run at 97 % of the limit)
-- ARGV[5]  key time-to-live in milliseconds
-- ARGV[6..] operation arguments, see below.
--
-- Both buckets refill continuously at limit/60 per second up to the limit, as OpenAI's do.
-- A reservation may take a bucket below zero: the caller is then told how long to wait before
-- sending, so callers queue in reservation order instead of polling and starving each other.
-- Time comes from Redis TIME so every worker shares one clock.

local key = KEYS[1]
local op = ARGV[1]
local cfg_tcap = tonumber(ARGV[2])
local cfg_rcap = tonumber(ARGV[3])
local headroom = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local h = redis.call('HMGET', key, 'tl', 'rl', 'ts', 'tcap', 'rcap', 'cool')
local tcap = tonumber(h[4]) or cfg_tcap
local rcap = tonumber(h[5]) or cfg_rcap
local tlim = tcap * (1 - headroom)
local rlim = rcap * (1 - headroom)
local tl = tonumber(h[1]) or tlim
local rl = tonumber(h[2]) or rlim
local ts = tonumber(h[3]) or now
local cool = tonumber(h[6]) or 0

local elapsed = now - ts
if elapsed > 0 then
  if tcap > 0 then tl = math.min(tlim, tl + tlim * elapsed / 60000000) end
  if rcap > 0 then rl = math.min(rlim, rl + rlim * elapsed / 60000000) end
end

local function save()
  redis.call('HSET', key, 'tl', tostring(tl), 'rl', tostring(rl),
             'ts', string.format('%.0f', now), 'cool', string.format('%.0f', cool))
  redis.call('PEXPIRE', key, ttl)
end

-- A limit learnt from the headers is stored under `field`; the level keeps its fraction of the
-- old limit (a bucket that had none starts full).  Returns the new cap, limit and level.
local function relearn(field, learnt, cap, lim, level)
  local new_lim = learnt * (1 - headroom)
  if cap > 0 then level = level * new_lim / lim else level = new_lim end
  redis.call('HSET', key, field, tostring(learnt))
  return learnt, new_lim, level
end

-- ARGV[i..i+3] limit/remaining tokens, limit/remaining requests (-1 = header absent)
-- ARGV[i+4] tolerance: only a server view this far (fraction of the limit) below ours counts
local function calibrate(i)
  local ltok, rtok = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local lreq, rreq = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local tolerance = tonumber(ARGV[i + 4])
  if ltok > 0 and ltok ~= tcap then tcap, tlim, tl = relearn('tcap', ltok, tcap, tlim, tl) end
  if lreq > 0 and lreq ~= rcap then rcap, rlim, rl = relearn('rcap', lreq, rcap, rlim, rl) end
  -- Somebody else spends from the same limit: follow the server down, never up.
  if tcap > 0 and rtok >= 0 and rtok < tl - tolerance * tcap then tl = rtok end
  if rcap > 0 and rreq >= 0 and rreq < rl - tolerance * rcap then rl = rreq end
end

if op == 'reserve' then
  -- ARGV[6] tokens, ARGV[7] longest acceptable wait (microseconds)
  local cost = tonumber(ARGV[6])
  local max_wait = tonumber(ARGV[7])
  if tcap > 0 and cost > tlim then
    save()
    return {-1, 0, tostring(tlim)}
  end
  local wait = 0
  if cool > now then wait = cool - now end
  if tcap > 0 and tl < cost then
    wait = math.max(wait, (cost - tl) * 60000000 / tlim)
  end
  if rcap > 0 and rl < 1 then
    wait = math.max(wait, (1 - rl) * 60000000 / rlim)
  end
  if wait > max_wait then
    save()
    return {0, math.ceil(wait), tostring(tl)}
  end
  if tcap > 0 then tl = tl - cost end
  if rcap > 0 then rl = rl - 1 end
  save()
  return {1, math.ceil(wait), tostring(tl)}
elseif op == 'settle' then
  -- ARGV[6] tokens to give back (negative: take more, the estimate was short); ARGV[7..11],
  -- when given, the answer's headers as for calibrate, followed first (one round trip for both)
  if ARGV[7] then calibrate(7) end
  if tcap > 0 then tl = math.min(tlim, tl + tonumber(ARGV[6])) end
  save()
  return {1, 0, tostring(tl)}
elseif op == 'calibrate' then
  calibrate(6)
  save()
  return {1, 0, tostring(tl)}
elseif op == 'penalize' then
  -- ARGV[6] microseconds during which nobody sends (the server's retry-after)
  local until_ts = now + tonumber(ARGV[6])
  if until_ts > cool then cool = until_ts end
  if tl > 0 then tl = 0 end
  save()
  return {1, cool - now, tostring(tl)}
end
return redis.error_reply('unknown operation ' .. tostring(op))
