-- Discord rate limiter: one atomic acquire attempt (see shared/ratelimit/discord.py).
-- Redis TIME is the only clock.  Returns {code, wait_ms, bucket_key}:
--   code 'ok'   -> a reservation was recorded; send after wait_ms (a booked global slot)
--   otherwise   -> the denial ('bucket', 'global', 'ban', 'dead-token', ...) and how long to wait
-- Keys are built from the prefix (a single Redis; the prefix carries a {hash tag}).
local P, tid, route, major = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local gscope, whkey, rid = ARGV[5], ARGV[6], ARGV[7]
local max_delay = tonumber(ARGV[8])
local lease = tonumber(ARGV[9])
local interval = tonumber(ARGV[10])
local tolerance = tonumber(ARGV[11])
local inv_limit = tonumber(ARGV[12])
local poll = tonumber(ARGV[13])
local cap_span = tonumber(ARGV[14])
local cap = tonumber(ARGV[15])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local function reply(code, wait, bkey)
  return {code, string.format('%.3f', wait), bkey or ''}
end

local function num(v, default)
  if v == false or v == nil then return default end
  return tonumber(v)
end

if tid ~= '-' and redis.call('EXISTS', P .. ':t:' .. tid .. ':dead') == 1 then
  return reply('dead-token', 0)
end
if whkey ~= '' and redis.call('EXISTS', P .. ':wh:' .. whkey .. ':dead') == 1 then
  return reply('dead-webhook', 0)
end
local ban = num(redis.call('GET', P .. ':ipblock'), 0)
if ban > now then return reply('ban', ban - now) end

local minute = math.floor(now / 60000)
local total = 0
for m = minute - 9, minute do
  total = total + num(redis.call('GET', P .. ':inv:' .. m), 0)
end
if total >= inv_limit then return reply('breaker', (minute + 1) * 60000 - now) end

if gscope ~= '' then
  local gb = num(redis.call('GET', P .. ':gb:' .. gscope), 0)
  if gb > now then return reply('global429', gb - now) end
end
local sub = num(redis.call('GET', P .. ':t:' .. tid .. ':sub:' .. route .. ':' .. major), 0)
if sub > now then return reply('sublimit', sub - now) end

local hash = redis.call('GET', P .. ':t:' .. tid .. ':r2b:' .. route)
local bkey = ''
if hash ~= '-' then
  if hash then
    bkey = P .. ':t:' .. tid .. ':b:' .. hash .. ':' .. major
  else
    bkey = P .. ':t:' .. tid .. ':u:' .. route .. ':' .. major
  end
  local q = bkey .. ':q'
  redis.call('ZREMRANGEBYSCORE', q, '-inf', now)
  local inflight = redis.call('ZCARD', q)
  local st = redis.call('HMGET', bkey, 'k', 'l', 'r', 'ra', 'p', 'blk')
  local blk = num(st[6], 0)
  if blk > now then return reply('shared', blk - now) end
  if st[1] == '1' then
    local limit, remaining = num(st[2], 1), num(st[3], 0)
    local reset_at, period = num(st[4], 0), num(st[5], 1000)
    if now >= reset_at then
      -- The window ended: a full one starts; its real end comes with the next response.
      remaining = limit
      reset_at = now + period
      redis.call('HSET', bkey, 'r', remaining, 'ra', string.format('%.3f', reset_at),
        'ws', string.format('%.3f', now), 'prov', 1)
      redis.call('PEXPIRE', bkey, math.ceil(period + 60000))
    end
    if remaining - inflight <= 0 then
      if remaining <= 0 or inflight == 0 then
        return reply('bucket', math.max(1, reset_at - now))
      end
      -- Requests in flight may leave room once answered; look again soon.
      return reply('bucket', math.max(1, math.min(poll, reset_at - now)))
    end
  elseif inflight >= 1 then
    return reply('discovery', poll)
  end
end

local delay = 0
if gscope ~= '' then
  local gkey = P .. ':g:' .. gscope
  local wkey = P .. ':gw:' .. gscope
  local tat = num(redis.call('GET', gkey), 0)
  if tat < now then tat = now end
  local send = math.max(now, tat - tolerance)
  -- The log of booked send times: a slot whose span (in any phase) would already hold
  -- `cap` of them moves to just after the one that must leave that span.
  redis.call('ZREMRANGEBYSCORE', wkey, '-inf', string.format('%.3f', now - cap_span))
  local low = string.format('(%.3f', send - cap_span)
  local count = redis.call('ZCOUNT', wkey, low, '+inf')
  if count >= cap then
    local leaving = redis.call('ZRANGEBYSCORE', wkey, low, '+inf', 'WITHSCORES', 'LIMIT',
      count - cap, 1)
    send = tonumber(leaving[2]) + cap_span
  end
  delay = send - now
  if delay > max_delay then return reply('global', delay) end
  local next_tat = math.max(tat, send) + interval
  redis.call('SET', gkey, string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now + 60000))
  redis.call('ZADD', wkey, string.format('%.3f', send), rid)
  redis.call('PEXPIRE', wkey, math.ceil(delay + cap_span + 60000))
end

if bkey ~= '' then
  local q = bkey .. ':q'
  redis.call('ZADD', q, string.format('%.3f', now + delay + lease), rid)
  redis.call('PEXPIRE', q, math.ceil(delay + lease + 60000))
  if redis.call('EXISTS', bkey) == 0 then
    redis.call('HSET', bkey, 'k', 0)
    redis.call('PEXPIRE', bkey, math.ceil(delay + lease + 60000))
  end
end
return reply('ok', delay, bkey)
