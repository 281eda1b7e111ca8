-- GCRA (generic cell rate algorithm) for one inbound API key: a token bucket kept as a single
-- "theoretical arrival time" (TAT), so one GET/SET per request and no background refill.
--
-- KEYS[1]  the key's TAT in microseconds (string)
-- ARGV[1]  emission interval T in microseconds (60e6 / requests per minute)
-- ARGV[2]  burst: requests that may arrive at once on an idle key (>= 1)
--
-- Returns {allowed (1/0), retry_after_us, remaining, reset_after_us}.
-- Time comes from Redis TIME so every API replica shares one clock.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tolerance = interval * burst

local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local new_tat = tat + interval
local allow_at = new_tat - tolerance

if now < allow_at then
  return {0, allow_at - now, 0, tat - now}
end

local reset_after = new_tat - now
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(reset_after / 1000) + 1)
local remaining = math.floor((tolerance - reset_after) / interval)
return {1, 0, remaining, reset_after}
