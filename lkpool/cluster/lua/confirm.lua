-- The owner made the lease of a placed session. ARGV: prefix, sid. Returns 1, or 0 when
-- the claim is gone (expired, cancelled, its node reaped): the owner must not keep it.
local key = P .. 'sess:' .. ARGV[2]
if redis.call('HGET', key, 'state') ~= 'starting' then return 0 end
redis.call('HSET', key, 'state', 'running')
redis.call('PERSIST', key)
return 1
