package redisstore

import (
	"github.com/redis/go-redis/v9"
)

// The Lua scripts below are the store's writes. Each runs atomically on the
// server, so a delta is all-or-nothing and the existence check that keeps a
// deleted session from coming back happens in the same step as the write.
//
// Conventions shared by all of them:
//   - Times are strings of decimal unix microseconds; "" is the zero time.
//     They are compared with tonumber but never handed back to redis.call
//     as Lua numbers, which Redis would format with 14 significant digits.
//   - "now" is the caller's clock, not the server's, so every method of the
//     store agrees with Load on when a session has expired.
//   - A session is live while its hash has the "c" field and now < its "e"
//     field. A hash found past its deadline is deleted on the spot and
//     treated as absent (its TTL may still be a millisecond away).
//   - inline = "1" means the index keys may be written from the script (a
//     standalone or Sentinel server: every key is on one node). On Redis
//     Cluster the principal's index key is in another slot, so the script
//     leaves the index to the caller and tells it what to do.
//
// The index of a principal is a sorted set of session ids. A member's score
// is not below its session's deadline, and the hash remembers that score in
// its "i" field. A write that moves the deadline past "i" re-indexes the
// session with some slack (a quarter of the time it has left), so a busy
// session touches its index about once per quarter lifetime instead of on
// every request. Pruning (members whose score has passed) happens on every
// index write; the index key's own TTL follows its highest score, so an
// index nobody writes again disappears.
const luaCommon = `
local function isInf(s)
  return s == 'inf' or s == '+inf'
end

local function indexUpdate(ikey, now, id, score, gt)
  redis.call('ZREMRANGEBYSCORE', ikey, '-inf', now)
  if score and gt then
    redis.call('ZADD', ikey, 'GT', score, id)
  elseif score then
    redis.call('ZADD', ikey, score, id)
  else
    redis.call('ZREM', ikey, id)
    return -- a TTL longer than needed is harmless: members are pruned
  end
  local top = redis.call('ZRANGE', ikey, -1, -1, 'WITHSCORES')
  if top[2] == nil then
    return
  end
  if isInf(top[2]) then
    redis.call('PERSIST', ikey)
  else
    redis.call('PEXPIREAT', ikey, string.format('%.0f', math.ceil(tonumber(top[2]) / 1000)))
  end
end

-- liveMeta returns exists, expires, principal, indexed score of the
-- session, after deleting it (and unindexing it when inline) if its
-- deadline has passed.
local function liveMeta(key, now, inline, iprefix, id)
  local m = redis.call('HMGET', key, 'c', 'e', 'p', 'i')
  if not m[1] then
    return false, '', '', ''
  end
  local e, p, i = m[2] or '', m[3] or '', m[4] or ''
  if e ~= '' and tonumber(e) <= tonumber(now) then
    redis.call('DEL', key)
    if inline and p ~= '' then
      indexUpdate(iprefix .. p, now, id, nil)
    end
    return false, '', '', ''
  end
  return true, e, p, i
end

-- covered reports whether an index score i is at or past deadline e.
local function covered(i, e)
  if i == '' then
    return false
  end
  if isInf(i) then
    return true
  end
  if e == '' then
    return false
  end
  return tonumber(e) <= tonumber(i)
end

-- slackScore is the score to index a session expiring at e with.
local function slackScore(e, now)
  if e == '' then
    return '+inf'
  end
  local x, n = tonumber(e), tonumber(now)
  if x <= n then
    return e
  end
  return string.format('%.0f', x + math.floor((x - n) / 4))
end
`

// applyScript applies one session.Delta.
//
//	KEYS[1]  the session hash
//	ARGV     now, create, setPrincipal, inline, principal, created, touched,
//	         expires, pexpireat (ms, "" for unchanged), index key prefix, id,
//	         prescore (Cluster: the score the caller already indexed the new
//	         principal with, or ""), number of Set pairs, then the Set pairs
//	         (name, value), then the Del names.
//
// It returns {0} when the session is absent and create is "0", else
// {1, old principal, new principal, expires, reindex}: on Cluster, reindex
// "1" asks the caller to index the session under the new principal (see
// Store.reindex).
var applyScript = redis.NewScript(luaCommon + `
local key = KEYS[1]
local now, create, setp, inline = ARGV[1], ARGV[2] == '1', ARGV[3] == '1', ARGV[4] == '1'
local principal, created, touched, expires, pexp = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local iprefix, id, prescore, nset = ARGV[10], ARGV[11], ARGV[12], tonumber(ARGV[13])
local firstSet, lastSet = 14, 13 + 2 * nset

local exists, oe, op, oi = liveMeta(key, now, inline, iprefix, id)
local fields = {}
if not exists then
  if not create then
    return {0}
  end
  redis.call('DEL', key) -- whatever hash without our fields sits there
  fields = {'c', created, 't', touched, 'e', expires, 'p', ''}
end
if touched ~= '' then
  fields[#fields + 1] = 't'; fields[#fields + 1] = touched
end
if expires ~= '' then
  fields[#fields + 1] = 'e'; fields[#fields + 1] = expires
end
if setp then
  fields[#fields + 1] = 'p'; fields[#fields + 1] = principal
end

local np, ne = op, oe
if setp then np = principal end
if expires ~= '' or not exists then ne = expires end
local ni = oi
if np ~= op then ni = '' end
local reindex = np ~= '' and not covered(ni, ne)
if inline then
  if op ~= '' and op ~= np then
    indexUpdate(iprefix .. op, now, id, nil)
  end
  if reindex then
    ni = slackScore(ne, now)
    indexUpdate(iprefix .. np, now, id, ni, false)
    reindex = false
  end
elseif reindex and prescore ~= '' and covered(prescore, ne) then
  ni, reindex = prescore, false
end
if ni ~= oi then
  if ni == '' then
    redis.call('HDEL', key, 'i')
  else
    fields[#fields + 1] = 'i'; fields[#fields + 1] = ni
  end
end

-- Del before Set, so a name in both ends up set (as in memstore). The
-- metadata rides in the first HSET; unpack limits each call's arguments.
local nargs = #ARGV
local i = lastSet + 1
while i <= nargs do
  local args, n = {}, 0
  while i <= nargs and n < 1000 do
    n = n + 1
    args[n] = 'v:' .. ARGV[i]
    i = i + 1
  end
  redis.call('HDEL', key, unpack(args))
end
local n = #fields
i = firstSet
repeat
  while i <= lastSet and n < 1000 do
    fields[n + 1] = 'v:' .. ARGV[i]
    fields[n + 2] = ARGV[i + 1]
    n = n + 2
    i = i + 2
  end
  if n > 0 then
    redis.call('HSET', key, unpack(fields, 1, n))
  end
  fields, n = {}, 0
until i > lastSet
if pexp ~= '' then
  redis.call('PEXPIREAT', key, pexp)
end
return {1, op, np, ne, reindex and 1 or 0}
`)

// touchScript moves a session's deadlines and nothing else: one HSET of
// the two fields and one PEXPIREAT, no rewrite of the attributes.
//
//	KEYS[1]  the session hash
//	ARGV     now, touched, expires, pexpireat, inline, index key prefix, id
//
// It returns {0} for an absent session, else {1, principal, expires,
// reindex}, as applyScript does.
var touchScript = redis.NewScript(luaCommon + `
local key = KEYS[1]
local now, touched, expires, pexp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local inline, iprefix, id = ARGV[5] == '1', ARGV[6], ARGV[7]
local exists, e, p, ni = liveMeta(key, now, inline, iprefix, id)
if not exists then
  return {0}
end
local fields = {}
if touched ~= '' then
  fields[#fields + 1] = 't'; fields[#fields + 1] = touched
end
if expires ~= '' then
  fields[#fields + 1] = 'e'; fields[#fields + 1] = expires
  e = expires
end
local reindex = p ~= '' and not covered(ni, e)
if inline and reindex then
  ni = slackScore(e, now)
  indexUpdate(iprefix .. p, now, id, ni, false)
  fields[#fields + 1] = 'i'; fields[#fields + 1] = ni
  reindex = false
end
if #fields > 0 then
  redis.call('HSET', key, unpack(fields))
end
if pexp ~= '' then
  redis.call('PEXPIREAT', key, pexp)
end
return {1, p, e, reindex and 1 or 0}
`)

// deleteScript destroys a session.
//
//	KEYS[1]  the session hash
//	ARGV     now, inline, index key prefix, id, only ("" or a principal)
//
// With only set it deletes the session just when it is live and belongs to
// that principal (DeleteByPrincipal must not destroy a session that moved
// to another user meanwhile). It returns {deleted (0 or 1), principal}.
var deleteScript = redis.NewScript(luaCommon + `
local key = KEYS[1]
local now, inline, iprefix, id, only = ARGV[1], ARGV[2] == '1', ARGV[3], ARGV[4], ARGV[5]
local exists, e, p = liveMeta(key, now, inline, iprefix, id)
if not exists then
  return {0, ''}
end
if only ~= '' and p ~= only then
  return {0, p}
end
redis.call('DEL', key)
if inline and p ~= '' then
  indexUpdate(iprefix .. p, now, id, nil)
end
return {1, p}
`)

// indexScript is the index maintenance of the scripts above, for Redis
// Cluster, where the caller runs it as a step of its own on the index's
// slot.
//
//	KEYS[1]  the principal's index
//	ARGV     now, id, score ("" removes id)
//
// Adding never lowers a member's score (ZADD GT): steps of concurrent
// requests may land out of order, and a score above the session's deadline
// only keeps a dead id a little longer in a set whose members are verified
// on every read, while one below it would let the pruning drop a live
// session from its principal's index.
var indexScript = redis.NewScript(luaCommon + `
local score = ARGV[3]
if score == '' then score = nil end
indexUpdate(KEYS[1], ARGV[1], ARGV[2], score, true)
return {1}
`)

// markIndexedScript records in a session's hash the score its principal's
// index now has for it (Cluster only, after a successful indexScript), so
// later writes know they need not touch the index. It changes nothing when
// the session is gone or has another principal by now, and never lowers
// the recorded score.
//
//	KEYS[1]  the session hash
//	ARGV     principal, score
var markIndexedScript = redis.NewScript(luaCommon + `
local m = redis.call('HMGET', KEYS[1], 'c', 'p', 'i')
if not m[1] or m[2] ~= ARGV[1] then
  return {0}
end
local i, score = m[3] or '', ARGV[2]
if i ~= '' and (isInf(i) or (not isInf(score) and tonumber(score) <= tonumber(i))) then
  return {0}
end
redis.call('HSET', KEYS[1], 'i', ARGV[2])
return {1}
`)

// allScripts are loaded into the server's script cache by New, so that the
// first requests do not each pay an EVALSHA miss.
var allScripts = []*redis.Script{applyScript, touchScript, deleteScript, indexScript, markIndexedScript}
