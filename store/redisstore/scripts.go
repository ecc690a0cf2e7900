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
//   - A session is live while its hash exists and now < its "e" field.
//     A hash found past its deadline is deleted on the spot and treated as
//     absent (its TTL may still be a millisecond away).
//   - inline = "1" means the index keys may be written from the script (a
//     standalone or Sentinel server: every key is on one node). On Redis
//     Cluster the principal's index key is in another slot, so the script
//     leaves the index to the caller and returns what the caller needs.
//
// The index of a principal is a sorted set of session ids scored by each
// session's deadline (µs, "+inf" for none). indexUpdate prunes members whose
// deadline has passed on every write, then keeps the key's own TTL at its
// latest member's deadline, so an index nobody reads again disappears.
// Inline, scores are exact (set in the same atomic step as the deadline);
// gt is for the Cluster case, see indexScript.
const luaIndexUpdate = `
local function indexUpdate(ikey, now, id, score, gt)
  redis.call('ZREMRANGEBYSCORE', ikey, '-inf', now)
  if score and gt then
    redis.call('ZADD', ikey, 'GT', score, id)
  elseif score then
    redis.call('ZADD', ikey, score, id)
  else
    redis.call('ZREM', ikey, id)
  end
  local top = redis.call('ZRANGE', ikey, -1, -1, 'WITHSCORES')
  if top[2] == nil then
    return
  end
  local s = tonumber(top[2])
  if s == math.huge then
    redis.call('PERSIST', ikey)
  else
    redis.call('PEXPIREAT', ikey, string.format('%.0f', math.ceil(s / 1000)))
  end
end

-- liveMeta returns exists, expires, principal of the session hash, after
-- deleting it (and unindexing it when inline) if its deadline has passed.
local function liveMeta(key, now, inline, iprefix, id)
  if redis.call('EXISTS', key) == 0 then
    return false, '', ''
  end
  local m = redis.call('HMGET', key, 'e', 'p')
  local e, p = m[1] or '', m[2] or ''
  if e ~= '' and tonumber(e) <= tonumber(now) then
    redis.call('DEL', key)
    if inline and p ~= '' then
      indexUpdate(iprefix .. p, now, id, nil)
    end
    return false, '', ''
  end
  return true, e, p
end

local function scoreOf(e)
  if e == '' then
    return '+inf'
  end
  return e
end

-- hcall calls cmd on key with the prefixed names (and values) in
-- ARGV[from..to], in chunks, because unpack has a limit on arguments.
local function hcall(cmd, key, from, to, paired)
  local step = 1
  if paired then step = 2 end
  local i = from
  while i <= to do
    local args = {}
    local n = 0
    while i <= to and n < 500 do
      args[#args + 1] = 'v:' .. ARGV[i]
      if paired then
        args[#args + 1] = ARGV[i + 1]
      end
      i = i + step
      n = n + 1
    end
    redis.call(cmd, key, unpack(args))
  end
end
`

// applyScript applies one session.Delta.
//
//	KEYS[1]  the session hash
//	ARGV     now, create, setPrincipal, inline, principal, created, touched,
//	         expires, pexpireat (ms, "" for unchanged), index key prefix, id,
//	         number of Set pairs, then the Set pairs (name, value), then the
//	         Del names.
//
// It returns {0} when the session is absent and create is "0", else
// {1, old principal, new principal, expires}: the caller on Redis Cluster
// updates the index from those.
var applyScript = redis.NewScript(luaIndexUpdate + `
local key = KEYS[1]
local now, create, setp, inline = ARGV[1], ARGV[2] == '1', ARGV[3] == '1', ARGV[4] == '1'
local principal, created, touched, expires, pexp = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local iprefix, id, nset = ARGV[10], ARGV[11], tonumber(ARGV[12])
local lastSet = 12 + 2 * nset

local exists, oe, op = liveMeta(key, now, inline, iprefix, id)
local meta = {}
if not exists then
  if not create then
    return {0}
  end
  meta = {'c', created, 't', touched, 'e', expires, 'p', ''}
end
if touched ~= '' then
  meta[#meta + 1] = 't'; meta[#meta + 1] = touched
end
if expires ~= '' then
  meta[#meta + 1] = 'e'; meta[#meta + 1] = expires
end
if setp then
  meta[#meta + 1] = 'p'; meta[#meta + 1] = principal
end
-- Del before Set, so a name in both ends up set (as in memstore).
hcall('HDEL', key, lastSet + 1, #ARGV, false)
hcall('HSET', key, 13, lastSet, true)
if #meta > 0 then
  redis.call('HSET', key, unpack(meta))
end
if pexp ~= '' then
  redis.call('PEXPIREAT', key, pexp)
end

local np = op
if setp then np = principal end
local ne = oe
if expires ~= '' or not exists then ne = expires end
if inline then
  if op ~= '' and op ~= np then
    indexUpdate(iprefix .. op, now, id, nil)
  end
  if np ~= '' and (np ~= op or expires ~= '' or not exists) then
    indexUpdate(iprefix .. np, now, id, scoreOf(ne))
  end
end
return {1, op, np, ne}
`)

// touchScript moves a session's deadlines and nothing else: one HSET of
// the two fields and one PEXPIREAT, no rewrite of the attributes.
//
//	KEYS[1]  the session hash
//	ARGV     now, touched, expires, pexpireat, inline, index key prefix, id
//
// It returns {0} for an absent session, else {1, principal, expires}.
var touchScript = redis.NewScript(luaIndexUpdate + `
local key = KEYS[1]
local now, touched, expires, pexp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local inline, iprefix, id = ARGV[5] == '1', ARGV[6], ARGV[7]
local exists, oe, p = liveMeta(key, now, inline, iprefix, id)
if not exists then
  return {0}
end
local meta = {}
if touched ~= '' then
  meta[#meta + 1] = 't'; meta[#meta + 1] = touched
end
if expires ~= '' then
  meta[#meta + 1] = 'e'; meta[#meta + 1] = expires
  oe = expires
end
if #meta > 0 then
  redis.call('HSET', key, unpack(meta))
end
if pexp ~= '' then
  redis.call('PEXPIREAT', key, pexp)
end
if inline and p ~= '' and expires ~= '' then
  indexUpdate(iprefix .. p, now, id, scoreOf(expires))
end
return {1, p, oe}
`)

// deleteScript destroys a session.
//
//	KEYS[1]  the session hash
//	ARGV     now, inline, index key prefix, id, only ("" or a principal)
//
// With only set it deletes the session just when it is live and belongs to
// that principal (DeleteByPrincipal must not destroy a session that moved
// to another user meanwhile). It returns {deleted (0 or 1), principal}.
var deleteScript = redis.NewScript(luaIndexUpdate + `
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
// Cluster, where the caller runs it as a second step on the index's own
// slot.
//
//	KEYS[1]  the principal's index
//	ARGV     now, id, score ("" removes id)
//
// Adding never lowers a member's score (ZADD GT): two steps of concurrent
// requests may land out of order, and a score above the session's real
// deadline only keeps a dead id a little longer in a set whose members are
// verified on every read, while one below it would let the pruning drop a
// live session from its principal's index.
var indexScript = redis.NewScript(luaIndexUpdate + `
local score = ARGV[3]
if score == '' then score = nil end
indexUpdate(KEYS[1], ARGV[1], ARGV[2], score, true)
return {1}
`)

// allScripts are loaded into the server's script cache by New, so that the
// first requests do not each pay an EVALSHA miss.
var allScripts = []*redis.Script{applyScript, touchScript, deleteScript, indexScript}
