-- Shared by every script (prepended when loaded). Keys live under the prefix ARGV[1]:
--   node:{nid} (hash)  nodes:hb (zset, ms of Redis's TIME)  node:{nid}:sess (set)
--   sess:{sid} (hash: node, state starting|running|gone, reason)  queue (list of rids)
--   req:{rid} (hash: rand, state waiting|placed|cancelled)  req:{rid}:answer (list)
-- Only Redis 7.0 commands, so Valkey and managed Redis run them unchanged.
local P = ARGV[1]
local HB = P .. 'nodes:hb'
local QUEUE = P .. 'queue'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function sessions_of(nid) return P .. 'node:' .. nid .. ':sess' end

-- free slots of a node that takes placements (up, heartbeat fresh), else -1
local function room(nid, fresh_after)
  local seen = redis.call('ZSCORE', HB, nid)
  if not seen or tonumber(seen) < fresh_after then return -1 end
  local h = redis.call('HMGET', P .. 'node:' .. nid, 'state', 'capacity')
  if h[1] ~= 'up' then return -1 end
  return tonumber(h[2]) - redis.call('SCARD', sessions_of(nid))
end

-- the node for one more lease: `preferred` when it has room, else the least loaded live node
-- that is not draining (lowest used/capacity, then most free slots, then name)
local function pick(preferred, timeout_ms)
  local fresh_after = now_ms() - timeout_ms
  if preferred ~= '' and room(preferred, fresh_after) > 0 then return preferred end
  local best, best_load, best_free = nil, 2, 0
  for _, nid in ipairs(redis.call('ZRANGEBYSCORE', HB, fresh_after, '+inf')) do
    local h = redis.call('HMGET', P .. 'node:' .. nid, 'state', 'capacity')
    if h[1] == 'up' then
      local cap = tonumber(h[2])
      local free = cap - redis.call('SCARD', sessions_of(nid))
      if free > 0 then
        local load = 1 - free / cap
        if load < best_load or (load == best_load and free > best_free) then
          best, best_load, best_free = nid, load, free
        end
      end
    end
  end
  return best
end

-- a slot of `nid` taken for a session that is still starting: it frees itself after ttl_ms
local function claim(nid, rand, ttl_ms)
  local sid = nid .. '.' .. rand
  redis.call('SADD', sessions_of(nid), sid)
  redis.call('HSET', P .. 'sess:' .. sid, 'node', nid, 'state', 'starting')
  redis.call('PEXPIRE', P .. 'sess:' .. sid, ttl_ms)
  return sid
end

local function mark_gone(sid, reason, gone_ttl_ms)
  local key = P .. 'sess:' .. sid
  redis.call('HSET', key, 'state', 'gone', 'reason', reason)
  redis.call('PEXPIRE', key, gone_ttl_ms)
end

-- free slots go to the queued requests, oldest first; each answer is pushed to its waiter
local function dispatch(timeout_ms, ttl_ms, answer_ttl_ms)
  local placed = 0
  while true do
    local rid = redis.call('LINDEX', QUEUE, 0)
    if not rid then break end
    local req = P .. 'req:' .. rid
    local h = redis.call('HMGET', req, 'rand', 'state')
    if not h[1] or h[2] ~= 'waiting' then
      redis.call('LPOP', QUEUE)  -- its waiter gave up, or went away (the request expired)
    else
      local nid = pick('', timeout_ms)
      if not nid then break end
      redis.call('LPOP', QUEUE)
      local sid = claim(nid, h[1], ttl_ms)
      redis.call('HSET', req, 'state', 'placed')
      redis.call('RPUSH', req .. ':answer', sid)
      redis.call('PEXPIRE', req .. ':answer', answer_ttl_ms)
      placed = placed + 1
    end
  end
  return placed
end

-- nodes silent for timeout_ms (and `also`): their sessions become gone (node_lost), their
-- records go. Idempotent: every node runs it, no leader needed.
local function reap(timeout_ms, gone_ttl_ms, also)
  local dead = redis.call('ZRANGEBYSCORE', HB, '-inf', '(' .. (now_ms() - timeout_ms))
  for _, nid in ipairs(also) do table.insert(dead, nid) end
  for _, nid in ipairs(dead) do
    for _, sid in ipairs(redis.call('SMEMBERS', sessions_of(nid))) do
      mark_gone(sid, 'node_lost', gone_ttl_ms)
    end
    redis.call('DEL', sessions_of(nid), P .. 'node:' .. nid)
    redis.call('ZREM', HB, nid)
    redis.call('PUBLISH', P .. 'events', 'node_lost ' .. nid)
  end
  return dead
end
