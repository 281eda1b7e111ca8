-- Discord rate limiter: apply one response (or its absence) atomically.
-- Returns 1 when the route's bucket hash changed (worth a log line), else 0.
local P, tid, route, major, slot_key, rid = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local status = tonumber(ARGV[7])
local hash = ARGV[8]
local h_limit, h_remaining, h_reset_after = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local scope = ARGV[12]
local retry_after = tonumber(ARGV[13])
local invalid, dead_token = ARGV[14] == '1', ARGV[15] == '1'
local whkey, dead_webhook, gscope = ARGV[16], ARGV[17] == '1', ARGV[18]
local safety, ban_ms, dead_ttl = tonumber(ARGV[19]), tonumber(ARGV[20]), tonumber(ARGV[21])
local tol = tonumber(ARGV[22])

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000

local function num(v, default)
  if v == false or v == nil then return default end
  return tonumber(v)
end
local function f3(x) return string.format('%.3f', x) end
local function keep(key, until_ms)
  redis.call('PEXPIRE', key, math.ceil(math.max(until_ms - now, 0) + 60000))
end

local changed = 0
if slot_key ~= '' then redis.call('ZREM', slot_key .. ':q', rid) end
local target = slot_key

if hash ~= '' then
  local r2b = P .. ':t:' .. tid .. ':r2b:' .. route
  local prev = redis.call('GET', r2b)
  if prev and prev ~= '-' and prev ~= hash then changed = 1 end
  redis.call('SET', r2b, hash, 'EX', 86400)
  target = P .. ':t:' .. tid .. ':b:' .. hash .. ':' .. major
  local st = redis.call('HMGET', target, 'k', 'ra', 'ws', 'prov', 'r', 'p')
  local span = h_reset_after + safety
  local new_reset = now + span
  if st[1] ~= '1' then
    redis.call('HSET', target, 'k', 1, 'l', h_limit, 'r', h_remaining, 'ra', f3(new_reset),
      'ws', f3(now), 'prov', 0, 'p', f3(span))
  else
    local ra, ws, prov = num(st[2], 0), num(st[3], 0), num(st[4], 0)
    local r, p = num(st[5], 0), num(st[6], span)
    if new_reset <= ws + p / 2 then
      -- An answer from a window that has already ended: it says nothing about this one.
      -- (Half a window, never more: a window of one request per 50 ms still learns.)
    elseif prov == 1 or new_reset > ra + tol then
      redis.call('HSET', target, 'l', h_limit, 'r', h_remaining, 'ra', f3(new_reset),
        'prov', 0, 'p', f3(math.max(p, span)))
      if prov ~= 1 then redis.call('HSET', target, 'ws', f3(ra)) end
    else
      redis.call('HSET', target, 'l', h_limit, 'r', math.min(r, h_remaining))
    end
  end
  keep(target, num(redis.call('HGET', target, 'ra'), now))
  if slot_key ~= target and string.find(slot_key, ':u:', 1, true)
      and redis.call('ZCARD', slot_key .. ':q') == 0 then
    redis.call('DEL', slot_key)
  end
elseif status and status >= 200 and status < 300 and string.find(slot_key, ':u:', 1, true) then
  -- A success without bucket headers: this route only has the global limit.
  redis.call('SET', P .. ':t:' .. tid .. ':r2b:' .. route, '-', 'EX', 3600)
  if redis.call('ZCARD', slot_key .. ':q') == 0 then redis.call('DEL', slot_key) end
elseif slot_key ~= '' and scope ~= 'global' then
  -- No headers (network error, 5xx): Discord may have counted it, so never refund.
  local st = redis.call('HMGET', slot_key, 'k', 'ra')
  if st[1] == '1' and now < num(st[2], 0) then redis.call('HINCRBY', slot_key, 'r', -1) end
end

local sub_key = P .. ':t:' .. tid .. ':sub:' .. route .. ':' .. major
if scope == 'global' and gscope ~= '' then
  local gb_key = P .. ':gb:' .. gscope
  local until_ms = math.max(num(redis.call('GET', gb_key), 0), now + retry_after)
  redis.call('SET', gb_key, f3(until_ms), 'PX', math.ceil(until_ms - now + 1000))
elseif (scope == 'user' or scope == 'shared') and target ~= '' then
  if scope == 'user' then
    local ra = num(redis.call('HGET', target, 'ra'), 0)
    local wait = math.max(retry_after, (h_reset_after or 0) + safety)
    local until_ms = math.max(ra, now + wait)
    redis.call('HSET', target, 'k', 1, 'r', 0, 'ra', f3(until_ms))
    if not redis.call('HGET', target, 'l') then redis.call('HSET', target, 'l', 1) end
    if not redis.call('HGET', target, 'p') then redis.call('HSET', target, 'p', f3(wait)) end
    if not redis.call('HGET', target, 'ws') then redis.call('HSET', target, 'ws', f3(now)) end
    keep(target, until_ms)
  else
    redis.call('HSET', target, 'blk', f3(now + retry_after))
    keep(target, now + retry_after)
  end
elseif scope == 'global' or scope == 'user' or scope == 'shared' or scope == 'sublimit' then
  redis.call('SET', sub_key, f3(now + retry_after), 'PX', math.ceil(retry_after + 1000))
elseif scope == 'cloudflare' then
  redis.call('SET', P .. ':ipblock', f3(now + ban_ms), 'PX', math.ceil(ban_ms))
end

if invalid then
  local inv_key = P .. ':inv:' .. math.floor(now / 60000)
  redis.call('INCR', inv_key)
  redis.call('EXPIRE', inv_key, 660)
end
if dead_token and tid ~= '-' then
  redis.call('SET', P .. ':t:' .. tid .. ':dead', 1, 'PX', math.ceil(dead_ttl))
end
if dead_webhook and whkey ~= '' then
  redis.call('SET', P .. ':wh:' .. whkey .. ':dead', 1, 'PX', math.ceil(dead_ttl))
end
return changed
