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
// A user record (version 3):
//
//	B version (3)  B dis (0/1)  i8 ca (created)  i8 ua (updated)
//	i8 nb: sessions created at or before it have ended (0: none)
//	i8 ls: the last sign-in (0: none)
//	then six strings: roles (space-joined)  nbx (the session exempt from nb)
//	nbr (the reason recorded for them)  id  name  pw (argon2id PHC string)
//
// Version 2 is the same without ls; it reads as ls = 0 and is rewritten
// as version 3 by the next write. Earlier user records (MessagePack) are
// not read (docs/operations.md, "Upgrades").
//
// A session record (version 2):
//
//	B  version (2)
//	i8 g   generation of the current token     i8 ca  created
//	i8 la  last rotation ("last used")         i8 ea  expires
//	i8 ra  revoked (0: not)                    c8 rq  request id of the last rotation
//	then seven strings: kid (the refresh key it started with)  jkt (the
//	DPoP key it is bound to, or empty)  cid  sc (granted scope)
//	rr (revocation reason)  ua  ip
//
// The 49-byte header comes first, so a rotation is the new header followed
// by the old record's tail. Session records of version 1 (before kid) are
// read as no record: their sessions ended at the upgrade.
//
// A DPoP proof's replay id is a key of its own, <tag>p:<id> (the user's
// slot) for sign-ins and rotations, <prefix>dpop:<id> for UseProof,
// holding the request id that recorded it and expiring (PXAT) with the
// proof.
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
local SESSION = '>Bi8i8i8i8i8c8Hc0Hc0Hc0Hc0Hc0Hc0Hc0'
local HOT = '>Bi8i8i8i8i8c8Hc0Hc0Hc0Hc0'
local NOREQ = string.rep('\0', 8)
local USER = '>BBi8i8i8i8Hc0Hc0Hc0Hc0Hc0Hc0'
-- getUser returns the user record as {id, name, pw, roles, dis, ca, ua,
-- nb, nbx, nbr, ls}, or nil.
local function getUser(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  local ver = string.byte(v, 1)
  if ver == 3 then
    local _, dis, ca, ua, nb, ls, roles, nbx, nbr, id, name, pw = struct.unpack(USER, v)
    return {id, name, pw, roles, dis, ca, ua, nb, nbx, nbr, ls}
  end
  if ver == 2 then
    local _, dis, ca, ua, nb, roles, nbx, nbr, id, name, pw = struct.unpack('>BBi8i8i8Hc0Hc0Hc0Hc0Hc0Hc0', v)
    return {id, name, pw, roles, dis, ca, ua, nb, nbx, nbr, 0}
  end
  error('user record ' .. key .. ' of a layout before version 2 (docs/operations.md, Upgrades)')
end
-- userState reads only what the rotation rule needs (not the name and
-- password hash): {roles, dis, nb, nbx, nbr} at 4, 5, 8, 9, 10.
local function userState(key)
  local v = redis.call('GET', key)
  if not v then return nil end
  if string.byte(v, 1) ~= 3 then return getUser(key) end
  local _, dis, ca, ua, nb, ls, roles, nbx, nbr = struct.unpack('>BBi8i8i8i8Hc0Hc0Hc0', v)
  return {nil, nil, nil, roles, dis, ca, ua, nb, nbx, nbr, ls}
end
local function putUser(key, u)
  redis.call('SET', key, struct.pack(USER, 3, u[5], u[6], u[7], u[8], u[11],
    #u[4], u[4], #u[9], u[9], #u[10], u[10], #u[1], u[1], #u[2], u[2], #u[3], u[3]))
end
local function unpackSession(v)
  if not v or string.byte(v, 1) ~= 2 then return nil end
  local s = {struct.unpack(SESSION, v)}
  table.remove(s, 1)
  return s -- g ca la ea ra rq kid jkt cid sc rr ua ip (pos)
end
local function packSession(s)
  return struct.pack(SESSION, 2, s[1], s[2], s[3], s[4], s[5], s[6],
    #s[7], s[7], #s[8], s[8], #s[9], s[9], #s[10], s[10], #s[11], s[11], #s[12], s[12], #s[13], s[13])
end
-- endSession records the session revoked at 'at' and drops it from the
-- index; it returns the new record.
local function endSession(key, v, at, reason, index, sid)
  local s = unpackSession(v)
  s[5], s[11] = at, reason
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
-- classify is the rotation rule (store.Decide) but the scope check. k
-- holds the keys: session, user, index, proof (the proof id's key, if
-- there is a proof); q the presentation (see presentation below). It
-- records the proof id where the rule does (row 7) and returns the
-- status, the session record (after any write), the user, and for an
-- accepted token the generation to hand out, ca, ea and the granted
-- scope; for 'reused' the cause.
local function classify(k, q)
  local v = redis.call('GET', k[1])
  if not v or string.byte(v, 1) ~= 2 then return 'unknown' end
  local _, g, ca, la, ea, ra, rq, kid, jkt, cid, sc = struct.unpack(HOT, v)
  if kid ~= q.kid then return 'unknown' end
  local u = userState(k[2])
  local now, sid = q.now, q.sid
  if not u or u[5] == 1 then
    if ra == 0 then
      local why, at = 'user_deleted', now
      if u then
        why = 'user_disabled'
        if ended(u, ca, sid) then at = u[8] end
      end
      v = endSession(k[1], v, at, why, k[3], sid)
    end
    return 'inactive', v, u
  end
  if ra ~= 0 then return 'revoked', v, u end
  if ended(u, ca, sid) then
    return 'revoked', endSession(k[1], v, u[8], endReason(u), k[3], sid), u
  end
  if now >= ea then return 'expired', v, u end
  if cid ~= q.client then return 'client', v, u end
  if jkt ~= '' then
    if not q.jkt then return 'proof_required', v, u end
    if q.jkt ~= jkt then return 'proof_key', v, u end
  end
  if q.jkt then
    local by = redis.call('GET', k[4])
    if by and (q.req == NOREQ or by ~= q.req) then return 'replayed', v, u end
    redis.call('SET', k[4], q.req, 'PXAT', q.exp)
  end
  local p = q.p
  if p == g then return 'rotated', v, u, g + 1, ca, ea, sc end
  if p > g then return 'recovered', v, u, p + 1, ca, ea, sc end
  if p == g - 1 and ((q.req ~= NOREQ and q.req == rq) or (q.window > 0 and now - la < q.window)) then
    return 'retried', v, u, g, ca, ea, sc
  end
  local cause = 'child_used'
  if p == g - 1 then cause = 'window_expired' end
  return 'reused', endSession(k[1], v, now, 'reuse', k[3], sid), u, cause
end
-- presentation reads a presentation from ARGV, from position i on: sid,
-- p (generation), client, kid, now, window (ms), req (request id, 8
-- bytes; zeros: none), "1" to date the call by Redis's clock too
-- (ruleNow), "1" if there is a proof, and then its jkt and expiry (ms).
local function presentation(i)
  local q = {sid = ARGV[i], p = tonumber(ARGV[i + 1]), client = ARGV[i + 2], kid = ARGV[i + 3],
    now = ruleNow(ARGV[i + 4], ARGV[i + 7]), window = tonumber(ARGV[i + 5]), req = ARGV[i + 6]}
  if ARGV[i + 8] == '1' then q.jkt, q.exp = ARGV[i + 9], ARGV[i + 10] end
  return q
end
`

// createUser stores a new user record unless the key exists.
// KEYS: user. ARGV: id, name, pw, roles, dis, ca, ua. Reply: 1, or 0 if
// the key exists.
var createUser = redis.NewScript(recordsLua + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
putUser(KEYS[1], {ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), 0, '', '', 0})
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

// createSession stores a new session at generation 0, records the
// sign-in's proof id (if any) and the user's last sign-in, then applies
// the per-user cap: while the index holds max or more entries, the least
// recently used one (lowest score) is dropped — ended sessions silently,
// an active one revoked as evicted and reported. Each step removes one
// entry, so the index never exceeds the cap and the work is bounded by
// what it removes. Finally the session is indexed (score: last use) and
// the index's expiry moved out to the session record's if that is later.
// KEYS: user, index, session[, proof id].
// ARGV: sid, cid, sc, ua, ip, ca, ea, ea+grace, max, kid, jkt, proof
// expiry (ms; with a proof).
// Reply: {"ok", evicted sid, ...}, {"inactive"} (user absent or
// disabled), {"conflict"}, {"replayed"}.
var createSession = redis.NewScript(recordsLua + `
local u = getUser(KEYS[1])
if not u or u[5] == 1 then return {'inactive'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'conflict'} end
if KEYS[4] then
  if redis.call('EXISTS', KEYS[4]) == 1 then return {'replayed'} end
  redis.call('SET', KEYS[4], NOREQ, 'PXAT', ARGV[12])
end
local now, keep = tonumber(ARGV[6]), tonumber(ARGV[8])
u[11] = now
putUser(KEYS[1], u)
redis.call('SET', KEYS[3], packSession({0, now, now, tonumber(ARGV[7]), 0, NOREQ,
  ARGV[10], ARGV[11], ARGV[2], ARGV[3], '', ARGV[4], ARGV[5]}), 'PXAT', ARGV[8])
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
// KEYS: session, user, index[, proof id].
// ARGV: requested scope (normalised), then the presentation (see
// presentation above).
// Reply: {"rotated"|"recovered"|"retried", session record, roles},
// {"reused", cause} or {status}.
var rotate = redis.NewScript(recordsLua + `
local q = presentation(2)
local st, v, u, ng, ca, ea, sc = classify(KEYS, q)
if st == 'reused' then return {st, ng} end
if not ng then return {st} end
if ARGV[1] ~= '' then
  local granted = {}
  for w in string.gmatch(sc, '%S+') do granted[w] = true end
  for w in string.gmatch(ARGV[1], '%S+') do
    if not granted[w] then return {'scope'} end
  end
end
if st ~= 'retried' then
  v = struct.pack('>Bi8i8i8i8i8c8', 2, ng, ca, q.now, ea, 0, q.req) .. string.sub(v, 50)
  redis.call('SET', KEYS[1], v, 'KEEPTTL')
  redis.call('ZADD', KEYS[3], 'XX', q.now, q.sid)
end
return {st, v, u[4]}
`)

// logout classifies the presented token exactly as rotate does (no
// scope) and, if it is accepted, ends what ARGV scope asks: local this
// session, global every session (endAll), others every session but this
// one (endAll with this one exempt).
// KEYS: session, user, index[, proof id].
// ARGV: "local"|"global"|"others", then the presentation (see
// presentation above).
// Reply: {status, cause, session record, user record} — status "ok" when
// done, else rotate's refusal words; cause only for "reused"; the records
// after the call (false where there is none).
var logout = redis.NewScript(recordsLua + `
local q = presentation(2)
local st, v, u, ng = classify(KEYS, q)
local cause = ''
if st == 'reused' then cause = ng end
if st == 'rotated' or st == 'recovered' or st == 'retried' then
  st = 'ok'
  if ARGV[1] == 'global' then endAll(KEYS[2], getUser(KEYS[2]), '', q.now, 'logout')
  elseif ARGV[1] == 'others' then endAll(KEYS[2], getUser(KEYS[2]), q.sid, q.now, 'logout')
  else v = endSession(KEYS[1], v, q.now, 'logout', KEYS[3], q.sid) end
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

// useProof records a proof id for a request without a session.
// KEYS: the proof id. ARGV: request id, expiry (ms).
// Reply: 1 recorded, 0 recorded before by another request.
var useProof = redis.NewScript(`
local by = redis.call('GET', KEYS[1])
if by and (ARGV[1] == string.rep('\0', 8) or by ~= ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
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
