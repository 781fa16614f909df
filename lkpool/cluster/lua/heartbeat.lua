-- One node's heartbeat, which also rewrites its whole state (so Redis restarting empty
-- loses nothing), reaps silent nodes and serves the queue.
-- ARGV: prefix, nid, internal url, public url, capacity, state, version, node timeout ms,
-- gone ttl ms, starting ttl ms, request ttl ms, n older nids to reap, those nids..., n
-- ended session ids whose release did not reach Redis, those ids..., then the node's live
-- session ids.
-- Returns {reaped nids, sids the cluster declared gone, nodes up, capacity, used, queued,
-- the live nodes as a flat list of nid, internal url, public url, state}.
local nid = ARGV[2]
local timeout_ms, gone_ttl_ms = tonumber(ARGV[8]), tonumber(ARGV[9])
local ttl_ms, req_ttl_ms = tonumber(ARGV[10]), tonumber(ARGV[11])
local n_older = tonumber(ARGV[12])
local older = {}
for i = 13, 12 + n_older do table.insert(older, ARGV[i]) end
redis.call('HSET', P .. 'node:' .. nid, 'internal_url', ARGV[3], 'public_url', ARGV[4],
           'capacity', ARGV[5], 'state', ARGV[6], 'version', ARGV[7])
redis.call('ZADD', HB, now_ms(), nid)
local reaped = reap(timeout_ms, gone_ttl_ms, older)
local set = sessions_of(nid)
local n_ended = tonumber(ARGV[13 + n_older])
local ended = {}
for i = 14 + n_older, 13 + n_older + n_ended do ended[ARGV[i]] = true end
local mine, dropped = {}, {}
for i = 14 + n_older + n_ended, #ARGV do
  local sid = ARGV[i]
  mine[sid] = true
  local key = P .. 'sess:' .. sid
  local state = redis.call('HGET', key, 'state')
  if state == 'gone' then
    table.insert(dropped, sid)  -- declared lost while this node was cut off: it ends it
  else
    redis.call('SADD', set, sid)
    if not state then redis.call('HSET', key, 'node', nid, 'state', 'running') end
  end
end
-- a member the node does not list has ended only when the node says so, or its record
-- went (an expired claim): a claim being made stays, and so does a lease made after the
-- node took its list (confirmed running meanwhile)
for _, sid in ipairs(redis.call('SMEMBERS', set)) do
  if not mine[sid] then
    local state = redis.call('HGET', P .. 'sess:' .. sid, 'state')
    if ended[sid] or not state or state == 'gone' then
      redis.call('SREM', set, sid)
      if ended[sid] and state and state ~= 'gone' then mark_gone(sid, 'ended', gone_ttl_ms) end
    end
  end
end
dispatch(timeout_ms, ttl_ms, req_ttl_ms)
local up, capacity, used, nodes = 0, 0, 0, {}
for _, other in ipairs(redis.call('ZRANGEBYSCORE', HB, now_ms() - timeout_ms, '+inf')) do
  local h = redis.call('HMGET', P .. 'node:' .. other, 'capacity', 'state', 'internal_url',
                       'public_url')
  up = up + 1
  if h[2] == 'up' then capacity = capacity + tonumber(h[1] or 0) end
  used = used + redis.call('SCARD', sessions_of(other))
  for _, v in ipairs({other, h[3] or '', h[4] or '', h[2] or ''}) do table.insert(nodes, v) end
end
return {reaped, dropped, up, capacity, used, redis.call('LLEN', QUEUE), nodes}
