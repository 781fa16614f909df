-- A waiter gives up. ARGV: prefix, rid, gone ttl ms. A place made for it meanwhile is
-- undone (its slot freed, no browser started); returns that sid, or false.
local req = P .. 'req:' .. ARGV[2]
local sid = redis.call('LPOP', req .. ':answer')
redis.call('LREM', QUEUE, 0, ARGV[2])
redis.call('DEL', req, req .. ':answer')
if sid then
  local nid = redis.call('HGET', P .. 'sess:' .. sid, 'node')
  if nid then redis.call('SREM', sessions_of(nid), sid) end
  mark_gone(sid, 'cancelled', tonumber(ARGV[3]))
end
return sid
