package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts. Each runs atomically in Redis; every key a script
// touches is either declared in KEYS or built from ARGV "tag", the
// "<prefix>{<uid>}:s:" prefix of the user's session keys, so all of them
// share the user's hash tag and live in one Cluster slot. Times are unix
// milliseconds passed by the caller; only createSession reads the server
// clock, to set the index's expiry, which Redis applies by its own clock.
//
// Records have a fixed binary layout (Redis's built-in struct library), so
// that a rotation reads and rewrites a few fixed-size fields without
// parsing the rest. All integers are big-endian; strings are a 2-byte
// length and their bytes.
//
// A user record (version 2):
//
//	B version (2)  B dis (0/1)  i8 ca (created)  i8 ua (updated)
//	i8 nb: sessions created at or before it have ended (0: none)
//	then six strings: roles (space-joined)  nbx (the session exempt from nb)
//	nbr (the reason recorded for them)  id  name  pw (argon2id PHC string)
//
// A user record written by an earlier version is a sequence of 7
// MessagePack values {id, name, pw, roles, dis, ca, ua}; it reads as nb = 0
// and is rewritten in this layout by the next write.
//
// A session record (version 1):
//
//	B  version (1)
//	i8 g   generation of the current token     i8 ca  created
//	i8 la  last rotation ("last used")         i8 ea  expires
//	i8 ra  revoked (0: not)                    c8 rq  request id of the last rotation
//	then five strings: cid  sc (granted scope)  rr (revocation reason)  ua  ip
//
// The 49-byte header comes first, so a rotation is the new header followed
// by the old record's tail.
//
// Replies are status words ("ok", "unknown", ...) or arrays whose first
// element is one; the Go side maps them to the store's sentinel errors.

// recordsLua reads and writes records, and holds the rotation rule in
// classify: a Lua implementation of store.Decide, whose doc comment is
// the table (FuzzRule checks the two against each other).
const recordsLua = `
-- ruleNow is the "now" of the rotation rule: the caller's time, or, when
-- the caller asks for it (Options.ServerClock), the later of that and
-- Redis's clock as the script runs, so that a call that waited out a
-- stall is dated when it takes effect (docs/design.md, "The reuse window").
local function ruleNow(argNow, serverClock)
  local now = tonumber(argNow)
  if serverClock == '1' then
    local t = redis.call('TIME')
    now = math.max(now, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  end
  return now
end
local SESSION = '>Bi8i8i8i8i8c8Hc0Hc0Hc0Hc0Hc0'
local HOT = '>Bi8i8i8i8i8c8Hc0Hc0'
local NOREQ = string.rep('\0', 8)
local USER = '>BBi8i8i8Hc0Hc0Hc0Hc0Hc0Hc0'
-- getUser returns the user record as {id, name, pw, roles, dis, ca, ua,
-- nb, nbx, nbr}, or nil.
local function getUser(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  if string.byte(v, 1) == 2 then
    local _, dis, ca, ua, nb, roles, nbx, nbr, id, name, pw = struct.unpack(USER, v)
    return {id, name, pw, roles, dis, ca, ua, nb, nbx, nbr}
  end
  local u = {cmsgpack.unpack(v)}
  if #u ~= 7 then error('malformed record ' .. key) end
  u[8], u[9], u[10] = 0, '', ''
  return u
end
-- userState reads only what the rotation rule needs (not the name and
-- password hash): {roles, dis, nb, nbx, nbr} at 4, 5, 8, 9, 10.
local function userState(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  if string.byte(v, 1) ~= 2 then return getUser(key) end
  local _, dis, ca, ua, nb, roles, nbx, nbr = struct.unpack('>BBi8i8i8Hc0Hc0Hc0', v)
  return {nil, nil, nil, roles, dis, ca, ua, nb, nbx, nbr}
end
local function putUser(key, u)
  redis.call('SET', key, struct.pack(USER, 2, u[5], u[6], u[7], u[8],
    #u[4], u[4], #u[9], u[9], #u[10], u[10], #u[1], u[1], #u[2], u[2], #u[3], u[3]))
end
local function unpackSession(v)
  if not v or string.byte(v, 1) ~= 1 then return nil end
  local s = {struct.unpack(SESSION, v)}
  table.remove(s, 1)
  return s -- g ca la ea ra rq cid sc rr ua ip (pos)
end
local function packSession(s)
  return struct.pack(SESSION, 1, s[1], s[2], s[3], s[4], s[5], s[6],
    #s[7], s[7], #s[8], s[8], #s[9], s[9], #s[10], s[10], #s[11], s[11])
end
-- endSession records the session revoked at 'at' and drops it from the
-- index; it returns the new record.
local function endSession(key, v, at, reason, index, sid)
  local s = unpackSession(v)
  s[5], s[9] = at, reason
  v = packSession(s)
  redis.call('SET', key, v, 'KEEPTTL')
  redis.call('ZREM', index, sid)
  return v
end
local function endReason(u)
  if u[10] == '' then return 'logout' end
  return u[10]
end
-- ended: the user's not-before time nb ends sessions created at or
-- before it, except the exempt session nbx.
local function ended(u, ca, sid)
  return u[8] > 0 and ca <= u[8] and sid ~= u[9]
end
-- endAll sets the user's nb = max(nb, now), nbx = except, nbr = reason:
-- one write, whatever the number of sessions. The index keeps the ended
-- sessions' entries (at most the cap of them); createSession drops them
-- when it needs room, and they expire with the index.
local function endAll(ukey, u, except, now, reason)
  if now > u[8] then u[8] = now end
  u[9], u[10] = except, reason
  putUser(ukey, u)
end
-- classify is the rotation rule (store.Decide) but the scope check. It
-- returns the status, the session record (after any
-- write), the user, and for an accepted token the generation to hand
-- out, ca, ea and the granted scope; for 'reused' the cause.
local function classify(skey, ukey, ikey, sid, p, client, now, window, req)
  local v = redis.call('GET', skey)
  if not v or string.byte(v, 1) ~= 1 then return 'unknown' end
  local _, g, ca, la, ea, ra, rq, cid, sc = struct.unpack(HOT, v)
  local u = userState(ukey)
  if not u or u[5] == 1 then
    if ra == 0 then
      local why, at = 'user_deleted', now
      if u then
        why = 'user_disabled'
        if ended(u, ca, sid) then at = u[8] end
      end
      v = endSession(skey, v, at, why, ikey, sid)
    end
    return 'inactive', v, u
  end
  if ra ~= 0 then return 'revoked', v, u end
  if ended(u, ca, sid) then
    return 'revoked', endSession(skey, v, u[8], endReason(u), ikey, sid), u
  end
  if now >= ea then return 'expired', v, u end
  if cid ~= client then return 'client', v, u end
  if p == g then return 'rotated', v, u, g + 1, ca, ea, sc end
  if p > g then return 'recovered', v, u, p + 1, ca, ea, sc end
  if p == g - 1 and ((req ~= NOREQ and req == rq) or (window > 0 and now - la < window)) then
    return 'retried', v, u, g, ca, ea, sc
  end
  local cause = 'child_used'
  if p == g - 1 then cause = 'window_expired' end
  return 'reused', endSession(skey, v, now, 'reuse', ikey, sid), u, cause
end
`

// createUser stores a new user record unless the key exists.
// KEYS: user. ARGV: id, name, pw, roles, dis, ca, ua. Reply: 1, or 0 if
// the key exists.
var createUser = redis.NewScript(recordsLua + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
putUser(KEYS[1], {ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), 0, '', ''})
return 1
`)

// updateUser replaces the password hash, roles and update time.
// KEYS: user. ARGV: pw, roles, ua. Reply: 1, or 0 if no such user.
var updateUser = redis.NewScript(recordsLua + `
local u = getUser(KEYS[1])
if not u then return 0 end
u[3], u[4], u[7] = ARGV[1], ARGV[2], tonumber(ARGV[3])
putUser(KEYS[1], u)
return 1
`)

// setUserDisabled sets the user's disabled flag; disabling ends every
// session (endAll, O(1)).
// KEYS: user, index. ARGV: 1|0, now, reason. Reply: 0 no such user, 1 done.
var setUserDisabled = redis.NewScript(recordsLua + `
local u = getUser(KEYS[1])
if not u then return 0 end
local now = tonumber(ARGV[2])
u[5], u[7] = tonumber(ARGV[1]), now
if u[5] == 1 then endAll(KEYS[1], u, '', now, ARGV[3]) else putUser(KEYS[1], u) end
return 1
`)

// deleteUser deletes the user record, its index and every indexed
// session record (at most the session cap of them).
// KEYS: user, index. ARGV: tag. Reply: the username, or nil if no user.
var deleteUser = redis.NewScript(recordsLua + `
local u = getUser(KEYS[1])
if not u then return false end
for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  redis.call('UNLINK', ARGV[1] .. sid)
end
redis.call('UNLINK', KEYS[1], KEYS[2])
return u[2]
`)

// hsetNew creates a hash that must not exist yet.
// KEYS: hash. ARGV: field, value, ... Reply: 1 created, 0 exists.
var hsetNew = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`)

// hsetExisting sets fields of a hash that must exist already.
// KEYS: hash. ARGV: field, value, ... Reply: 1 done, 0 no such hash.
var hsetExisting = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`)

// compareAndSet sets a string key to ARGV[2] (deletes it if ARGV[2] is
// empty) only if it holds ARGV[1]. Reply: 1 done, 0 not.
var compareAndSet = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
`)

// createSession stores a new session at generation 0, then applies the
// per-user cap: while the index holds max or more entries, the least
// recently used one (lowest score) is dropped — ended sessions silently,
// an active one revoked as evicted and reported. Each step removes one
// entry, so the index never exceeds the cap and the work is bounded by
// what it removes. Finally the session is indexed (score: last use) and
// the index's expiry moved out to the session record's if that is later.
// KEYS: user, index, session.
// ARGV: sid, cid, sc, ua, ip, ca, ea, ea+grace, max.
// Reply: {"ok", evicted sid, ...}, {"inactive"} (user absent or
// disabled), {"conflict"}.
var createSession = redis.NewScript(recordsLua + `
local u = getUser(KEYS[1])
if not u or u[5] == 1 then return {'inactive'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'conflict'} end
local now, keep = tonumber(ARGV[6]), tonumber(ARGV[8])
redis.call('SET', KEYS[3], packSession({0, now, now, tonumber(ARGV[7]), 0, NOREQ,
  ARGV[2], ARGV[3], '', ARGV[4], ARGV[5]}), 'PXAT', ARGV[8])
local out, max = {'ok'}, tonumber(ARGV[9])
local tag = string.sub(KEYS[3], 1, #KEYS[3] - #ARGV[1])
while redis.call('ZCARD', KEYS[2]) >= max do
  local sid = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  local key = tag .. sid
  local v = redis.call('GET', key)
  local s = unpackSession(v)
  if s and s[5] == 0 and now < s[4] and not ended(u, s[2], sid) then
    endSession(key, v, now, 'evicted', KEYS[2], sid)
    out[#out + 1] = sid
  else
    redis.call('ZREM', KEYS[2], sid)
  end
end
redis.call('ZADD', KEYS[2], now, ARGV[1])
local ttl = redis.call('PTTL', KEYS[2])
local t = redis.call('TIME')
local clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ttl < 0 or clock + ttl < keep then redis.call('PEXPIREAT', KEYS[2], ARGV[8]) end
return out
`)

// rotate applies the rotation rule (store.Decide; classify above) and,
// for an accepted token, the scope check, then writes the new header:
// g, la = now, rq = the request; and the index score (last use).
// "retried" writes nothing.
//
// KEYS: session, user, index.
// ARGV: sid, presented generation, client id, requested scope
// (normalised), now, reuse window (ms), request id (8 bytes; zeros: none),
// "1" to date the call by Redis's clock too (ruleNow).
// Reply: {"rotated"|"recovered"|"retried", session record, roles},
// {"reused", cause} or {status}.
var rotate = redis.NewScript(recordsLua + `
local now = ruleNow(ARGV[5], ARGV[8])
local st, v, u, ng, ca, ea, sc = classify(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]),
  ARGV[3], now, tonumber(ARGV[6]), ARGV[7])
if st == 'reused' then return {st, ng} end
if not ng then return {st} end
if ARGV[4] ~= '' then
  local granted = {}
  for w in string.gmatch(sc, '%S+') do granted[w] = true end
  for w in string.gmatch(ARGV[4], '%S+') do
    if not granted[w] then return {'scope'} end
  end
end
if st ~= 'retried' then
  v = struct.pack('>Bi8i8i8i8i8c8', 1, ng, ca, now, ea, 0, ARGV[7]) .. string.sub(v, 50)
  redis.call('SET', KEYS[1], v, 'KEEPTTL')
  redis.call('ZADD', KEYS[3], 'XX', now, ARGV[1])
end
return {st, v, u[4]}
`)

// logout classifies the presented token exactly as rotate does (no scope,
// no request id) and, if it is accepted, ends what ARGV scope asks:
// local this session, global every session (endAll), others every
// session but this one (endAll with this one exempt).
// KEYS: session, user, index.
// ARGV: sid, presented generation, client id, now, reuse window (ms),
// "local"|"global"|"others", "1" to date the call by Redis's clock too.
// Reply: {status, cause, session record, user record} — status "ok" when
// done, else rotate's refusal words; cause only for "reused"; the records
// after the call (false where there is none).
var logout = redis.NewScript(recordsLua + `
local now = ruleNow(ARGV[4], ARGV[7])
local st, v, u, ng = classify(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]),
  ARGV[3], now, tonumber(ARGV[5]), NOREQ)
local cause = ''
if st == 'reused' then cause = ng end
if st == 'rotated' or st == 'recovered' or st == 'retried' then
  st = 'ok'
  if ARGV[6] == 'global' then endAll(KEYS[2], getUser(KEYS[2]), '', now, 'logout')
  elseif ARGV[6] == 'others' then endAll(KEYS[2], getUser(KEYS[2]), ARGV[1], now, 'logout')
  else v = endSession(KEYS[1], v, now, 'logout', KEYS[3], ARGV[1]) end
end
return {st, cause, v or false, redis.call('GET', KEYS[2])}
`)

// revokeSession records one session revoked unless it already is (the
// first time and reason are kept; an end by the user's nb, not yet
// recorded, is recorded as it reads).
// KEYS: session, user, index. ARGV: sid, now, reason.
// Reply: 0 no such session, 1 done.
var revokeSession = redis.NewScript(recordsLua + `
local v = redis.call('GET', KEYS[1])
local s = unpackSession(v)
if not s then return 0 end
if s[5] == 0 then
  local u = getUser(KEYS[2])
  if u and ended(u, s[2], ARGV[1]) then
    endSession(KEYS[1], v, u[8], endReason(u), KEYS[3], ARGV[1])
  else
    endSession(KEYS[1], v, tonumber(ARGV[2]), ARGV[3], KEYS[3], ARGV[1])
  end
end
return 1
`)

// revokeUserSessions ends the user's sessions but one (endAll, O(1)).
// KEYS: user, index. ARGV: except, now, reason. Reply: 0 no such user, 1.
var revokeUserSessions = redis.NewScript(recordsLua + `
local u = getUser(KEYS[1])
if not u then return 0 end
endAll(KEYS[1], u, ARGV[1], tonumber(ARGV[2]), ARGV[3])
return 1
`)

// listSessions returns the user record and the user's indexed sessions
// (at most the cap); Go applies store.Effective and the time.
// KEYS: user, index. ARGV: tag.
// Reply: {user record or false, sid, record, sid, record, ...}.
var listSessions = redis.NewScript(`
local out = {redis.call('GET', KEYS[1])}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local v = redis.call('GET', ARGV[1] .. sid)
  if v then
    out[#out + 1] = sid
    out[#out + 1] = v
  end
end
return out
`)
