package redisstore

import (
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/store"
)

// grace is store.TombstoneGrace in the scripts' milliseconds.
var grace = strconv.FormatInt(store.TombstoneGrace.Milliseconds(), 10)

// The Lua scripts. Each runs atomically in Redis and touches only keys
// declared in KEYS, all of one user's hash tag (one Cluster slot). Times
// are unix milliseconds passed by the caller; Redis's own clock (TIME)
// decides only what the key expiry it replaces would: whether a session
// record is gone (its expiry plus store.TombstoneGrace has passed), and,
// with Options.ServerClock, the rule's "now" (ruleNow).
//
// Records have a fixed binary layout (Redis's built-in struct library), so
// that a rotation reads and rewrites a few fixed-size fields without
// parsing the rest. All integers are big-endian.
//
// A user record (version 3), a string:
//
//	B version (3)  B dis (0/1)  i8 ca (created)  i8 ua (updated)
//	i8 nb: sessions created at or before it have ended (0: none)
//	i8 ls: the last sign-in (0: none)
//	then six strings of a 2-byte length: roles (space-joined)  nbx (the
//	session exempt from nb)  nbr (the reason recorded for them)  id  name
//	pw (argon2id PHC string)
//
// Version 2 is the same without ls; it reads as ls = 0 and is rewritten
// as version 3 by the next write. Earlier user records (MessagePack) are
// not read (docs/operations.md, "Upgrades").
//
// A user's sessions are one hash, <tag>s, session id → session record; it
// is the user's session index too, and expires with its longest-lived
// record. A session record (version 3):
//
//	B  version (3)  I7 g (generation of the current token)
//	i6 ca (created)  i6 la (last rotation, "last used")  i6 ea (expires)
//	c8 rq (request id of the last rotation; zeros: none)
//	then strings of a 1-byte length (2 bytes for sc and ua):
//	kid (the refresh key it started with)  jkt (the DPoP key it is bound
//	to, or empty)  cid  sc (granted scope)
//	end: empty while the session has not ended, else the revocation
//	reason followed by the time (i6)
//	ip  ua
//
// jkt, ip and ua are in the compact forms of codec.go (a thumbprint and
// an address in binary, the user agent compressed); the scripts compare
// jkt with the presented one, encoded alike, and never read ip or ua. The
// 34-byte header comes first, so a rotation is the new header followed by
// the old record's tail. Session records of earlier versions (string keys
// <tag>s:<sid>, indexed by the sorted set <tag>sessions) are not read:
// their sessions ended at the upgrade, and the keys expire.
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
var recordsLua = `
-- The rotation rule's "now" is the caller's time, or, when the caller
-- asks for it (Options.ServerClock), the later of that and Redis's clock
-- as the script runs, so that a call that waited out a stall is dated
-- when it takes effect (docs/design.md, "The reuse window"): see
-- presentation.
local HEAD = '>BI7i6i6i6c8'
local HOT = HEAD .. 'Bc0Bc0Bc0Hc0Bc0'
local NOREQ = string.rep('\0', 8)
local GRACE = ` + grace + `
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
-- clock returns Redis's time in ms.
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- readSession returns a session record's fields {g, ca, la, ea, rq,
-- kid, jkt, cid, sc, ra (0: not ended), rr, e (where its end starts),
-- f (where what follows it starts)}, or nil for no record, a record of
-- an earlier layout, or one that is gone at time t (expiry + grace).
local function readSession(v, t)
  if not v or string.byte(v, 1) ~= 3 then return nil end
  local _, g, ca, la, ea, rq, kid, jkt, cid, sc, e, f = struct.unpack(HOT, v)
  if ea + GRACE <= t then return nil end
  local s = {g = g, ca = ca, la = la, ea = ea, rq = rq, kid = kid, jkt = jkt, cid = cid, sc = sc,
    ra = 0, rr = '', e = f - 1 - #e, f = f}
  if #e > 0 then s.ra, s.rr = struct.unpack('>i6', e, #e - 5), string.sub(e, 1, #e - 6) end
  return s
end
-- endSession records the session sid (record v, read as s) ended at
-- 'at' for 'reason' and returns the new record.
local function endSession(h, sid, v, s, at, reason)
  local e = reason .. struct.pack('>i6', at)
  v = string.sub(v, 1, s.e - 1) .. struct.pack('>Bc0', #e, e) .. string.sub(v, s.f)
  redis.call('HSET', h, sid, v)
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
-- one write, whatever the number of sessions. Their records stay (at most
-- the cap of them); createSession drops them when it needs room, and they
-- expire with the hash.
local function endAll(ukey, u, except, now, reason)
  if now > u[8] then u[8] = now end
  u[9], u[10] = except, reason
  putUser(ukey, u)
end
-- classify is the rotation rule (store.Decide) but the scope check. k
-- holds the keys: sessions (hash), user, proof (the proof id's key, if
-- there is a proof); q the presentation (see presentation below). It
-- records the proof id where the rule does (row 7) and returns the
-- status, the session record (after any write) and its fields, the user,
-- and for an accepted token the generation to hand out; for 'reused' the
-- cause.
local function classify(k, q)
  local sid, now = q.sid, q.now
  local v = redis.call('HGET', k[1], sid)
  local s = readSession(v, q.clock)
  if not s or s.kid ~= q.kid then return 'unknown' end
  local u = userState(k[2])
  if not u or u[5] == 1 then
    if s.ra == 0 then
      local why, at = 'user_deleted', now
      if u then
        why = 'user_disabled'
        if ended(u, s.ca, sid) then at = u[8] end
      end
      v = endSession(k[1], sid, v, s, at, why)
    end
    return 'inactive', v, s, u
  end
  if s.ra ~= 0 then return 'revoked', v, s, u end
  if ended(u, s.ca, sid) then
    return 'revoked', endSession(k[1], sid, v, s, u[8], endReason(u)), s, u
  end
  if now >= s.ea then return 'expired', v, s, u end
  if s.cid ~= q.client then return 'client', v, s, u end
  if s.jkt ~= '' then
    if not q.jkt then return 'proof_required', v, s, u end
    if q.jkt ~= s.jkt then return 'proof_key', v, s, u end
  end
  if q.jkt then
    local by = redis.call('GET', k[3])
    if by and (q.req == NOREQ or by ~= q.req) then return 'replayed', v, s, u end
    redis.call('SET', k[3], q.req, 'PXAT', q.exp)
  end
  local p, g = q.p, s.g
  if p == g then return 'rotated', v, s, u, g + 1 end
  if p > g then return 'recovered', v, s, u, p + 1 end
  if p == g - 1 and ((q.req ~= NOREQ and q.req == s.rq) or (q.window > 0 and now - s.la < q.window)) then
    return 'retried', v, s, u, g
  end
  local cause = 'child_used'
  if p == g - 1 then cause = 'window_expired' end
  return 'reused', endSession(k[1], sid, v, s, now, 'reuse'), s, u, cause
end
-- presentation reads a presentation from ARGV, from position i on: sid,
-- p (generation), client, kid, now, window (ms), req (request id, 8
-- bytes; zeros: none), "1" to date the call by Redis's clock too
-- (ruleNow), "1" if there is a proof, and then its jkt (encoded as the
-- record's) and expiry (ms).
local function presentation(i)
  local t = clock()
  local now = tonumber(ARGV[i + 4])
  if ARGV[i + 7] == '1' then now = math.max(now, t) end
  local q = {sid = ARGV[i], p = tonumber(ARGV[i + 1]), client = ARGV[i + 2], kid = ARGV[i + 3],
    now = now, clock = t, window = tonumber(ARGV[i + 5]), req = ARGV[i + 6]}
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
// KEYS: user. ARGV: 1|0, now, reason. Reply: 0 no such user, 1 done.
var setUserDisabled = redis.NewScript(recordsLua + `
local u = getUser(KEYS[1])
if not u then return 0 end
local now = tonumber(ARGV[2])
u[5], u[7] = tonumber(ARGV[1]), now
if u[5] == 1 then endAll(KEYS[1], u, '', now, ARGV[3]) else putUser(KEYS[1], u) end
return 1
`)

// deleteUser deletes the user record and its sessions.
// KEYS: user, sessions. Reply: the username, or nil if no user.
var deleteUser = redis.NewScript(recordsLua + `
local u = getUser(KEYS[1])
if not u then return false end
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

// createSession stores a new session record (built by Go, at generation
// 0), records the sign-in's proof id (if any) and the user's last
// sign-in, and applies the per-user cap. When the hash already holds max
// or more records it walks them (at most the cap, plus those this call
// ended): records that are gone or of an earlier layout are dropped; the
// least recently used active sessions (by last use, ties by id) are
// ended as evicted and reported until fewer than max remain active; then
// the least recently used ended ones (not those just evicted) are
// dropped until the new record fits under max. The hash's expiry moves
// out to the new record's if that is later, so it expires with its
// longest-lived record. A record that would be gone at once (a PXAT in
// the past) is not stored.
// KEYS: user, sessions[, proof id].
// ARGV: sid, record, ca, ea + grace, max[, proof expiry (ms)].
// Reply: {"ok", evicted sid, ...}, {"inactive"} (user absent or
// disabled), {"conflict"}, {"replayed"}.
var createSession = redis.NewScript(recordsLua + `
local u = getUser(KEYS[1])
if not u or u[5] == 1 then return {'inactive'} end
local t = clock()
if readSession(redis.call('HGET', KEYS[2], ARGV[1]), t) then return {'conflict'} end
if KEYS[3] then
  if redis.call('EXISTS', KEYS[3]) == 1 then return {'replayed'} end
  redis.call('SET', KEYS[3], NOREQ, 'PXAT', ARGV[6])
end
local now, keep, max = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
u[11] = now
putUser(KEYS[1], u)
if keep <= t then return {'ok'} end
local out = {'ok'}
if redis.call('HLEN', KEYS[2]) >= max then
  local all = redis.call('HGETALL', KEYS[2])
  local active, done, n = {}, {}, 0
  for i = 1, #all, 2 do
    local sid, v = all[i], all[i + 1]
    local s = readSession(v, t)
    if not s or sid == ARGV[1] then
      redis.call('HDEL', KEYS[2], sid)
    else
      n = n + 1
      local e = {sid = sid, v = v, s = s}
      if s.ra == 0 and now < s.ea and not ended(u, s.ca, sid) then active[#active + 1] = e else done[#done + 1] = e end
    end
  end
  local lru = function(a, b) return a.s.la < b.s.la or a.s.la == b.s.la and a.sid < b.sid end
  table.sort(active, lru)
  table.sort(done, lru)
  for i = 1, #active - max + 1 do
    local e = active[i]
    endSession(KEYS[2], e.sid, e.v, e.s, now, 'evicted')
    out[#out + 1] = e.sid
  end
  for i = 1, math.min(#done, n + 1 - max) do
    redis.call('HDEL', KEYS[2], done[i].sid)
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[2])
if ttl < 0 or t + ttl < keep then redis.call('PEXPIREAT', KEYS[2], keep) end
return out
`)

// rotate applies the rotation rule (store.Decide; classify above) and,
// for an accepted token, the scope check, then writes the new header: g,
// la = now, rq = the request. "retried" writes nothing.
//
// KEYS: sessions, user[, proof id].
// ARGV: requested scope (normalised), then the presentation (see
// presentation above).
// Reply: {"rotated"|"recovered"|"retried", session record, roles},
// {"reused", cause} or {status}.
var rotate = redis.NewScript(recordsLua + `
local q = presentation(2)
local st, v, s, u, ng = classify(KEYS, q)
if st == 'reused' then return {st, ng} end
if not ng then return {st} end
if ARGV[1] ~= '' then
  local granted = {}
  for w in string.gmatch(s.sc, '%S+') do granted[w] = true end
  for w in string.gmatch(ARGV[1], '%S+') do
    if not granted[w] then return {'scope'} end
  end
end
if st ~= 'retried' then
  v = struct.pack(HEAD, 3, ng, s.ca, q.now, s.ea, q.req) .. string.sub(v, 35)
  redis.call('HSET', KEYS[1], q.sid, v)
end
return {st, v, u[4]}
`)

// logout classifies the presented token exactly as rotate does (no
// scope) and, if it is accepted, ends what ARGV scope asks: local this
// session, global every session (endAll), others every session but this
// one (endAll with this one exempt).
// KEYS: sessions, user[, proof id].
// ARGV: "local"|"global"|"others", then the presentation (see
// presentation above).
// Reply: {status, cause, session record, user record} — status "ok" when
// done, else rotate's refusal words; cause only for "reused"; the records
// after the call (false where there is none).
var logout = redis.NewScript(recordsLua + `
local q = presentation(2)
local st, v, s, u, ng = classify(KEYS, q)
local cause = ''
if st == 'reused' then cause = ng end
if st == 'rotated' or st == 'recovered' or st == 'retried' then
  st = 'ok'
  if ARGV[1] == 'global' then endAll(KEYS[2], getUser(KEYS[2]), '', q.now, 'logout')
  elseif ARGV[1] == 'others' then endAll(KEYS[2], getUser(KEYS[2]), q.sid, q.now, 'logout')
  else v = endSession(KEYS[1], q.sid, v, s, q.now, 'logout') end
end
return {st, cause, v or false, redis.call('GET', KEYS[2])}
`)

// revokeSession records one session revoked unless it already is (the
// first time and reason are kept; an end by the user's nb, not yet
// recorded, is recorded as it reads).
// KEYS: sessions, user. ARGV: sid, now, reason.
// Reply: 0 no such session, 1 done.
var revokeSession = redis.NewScript(recordsLua + `
local v = redis.call('HGET', KEYS[1], ARGV[1])
local s = readSession(v, clock())
if not s then return 0 end
if s.ra == 0 then
  local u = getUser(KEYS[2])
  if u and ended(u, s.ca, ARGV[1]) then
    endSession(KEYS[1], ARGV[1], v, s, u[8], endReason(u))
  else
    endSession(KEYS[1], ARGV[1], v, s, tonumber(ARGV[2]), ARGV[3])
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
// KEYS: user. ARGV: except, now, reason. Reply: 0 no such user, 1.
var revokeUserSessions = redis.NewScript(recordsLua + `
local u = getUser(KEYS[1])
if not u then return 0 end
endAll(KEYS[1], u, ARGV[1], tonumber(ARGV[2]), ARGV[3])
return 1
`)

// readSessions returns the user record and one or all of the user's
// session records; Go applies store.Effective and drops those gone.
// KEYS: user, sessions. ARGV: a session id, or none for all of them.
// Reply: {user record or false, sid, record, sid, record, ...}.
var readSessions = redis.NewScript(`
local out = {redis.call('GET', KEYS[1])}
if ARGV[1] then
  local v = redis.call('HGET', KEYS[2], ARGV[1])
  if v then out[2], out[3] = ARGV[1], v end
  return out
end
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all do out[i + 1] = all[i] end
return out
`)
