-- Places one lease, atomically. ARGV: prefix, preferred nid ('' none), rand (the session
-- id's random part), starting ttl ms, node timeout ms, rid ('' = do not queue), request
-- ttl ms. While the queue holds waiters nobody jumps it: they are served first.
-- Returns {'placed', sid} | {'queued'} | {'full'}.
local preferred, rand = ARGV[2], ARGV[3]
local ttl_ms, timeout_ms = tonumber(ARGV[4]), tonumber(ARGV[5])
local rid, req_ttl_ms = ARGV[6], tonumber(ARGV[7])
dispatch(timeout_ms, ttl_ms, req_ttl_ms)
if redis.call('LLEN', QUEUE) == 0 then
  local nid = pick(preferred, timeout_ms)
  if nid then return {'placed', claim(nid, rand, ttl_ms)} end
end
if rid == '' then return {'full'} end
local req = P .. 'req:' .. rid
redis.call('HSET', req, 'rand', rand, 'state', 'waiting')
redis.call('PEXPIRE', req, req_ttl_ms)
redis.call('RPUSH', QUEUE, rid)
return {'queued'}
