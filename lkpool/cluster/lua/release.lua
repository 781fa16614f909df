-- A session ended. ARGV: prefix, sid, reason, gone ttl ms, node timeout ms, starting ttl
-- ms, request ttl ms. Its slot is free at once, and goes to the queue's first waiter.
local key = P .. 'sess:' .. ARGV[2]
local nid = redis.call('HGET', key, 'node')
if nid then redis.call('SREM', sessions_of(nid), ARGV[2]) end
if nid or ARGV[3] ~= '' then mark_gone(ARGV[2], ARGV[3], tonumber(ARGV[4])) end
return dispatch(tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
