-- A draining node leaves. ARGV: prefix, nid, gone ttl ms. Sessions still listed end as
-- `shutdown`; the node's records go.
local nid = ARGV[2]
for _, sid in ipairs(redis.call('SMEMBERS', sessions_of(nid))) do
  mark_gone(sid, 'shutdown', tonumber(ARGV[3]))
end
redis.call('DEL', sessions_of(nid), P .. 'node:' .. nid)
redis.call('ZREM', HB, nid)
return 1
