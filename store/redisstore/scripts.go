package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts. Each runs atomically in Redis; every key a script
// touches is either declared in KEYS or built from ARGV "tag", the
// "<prefix>{<uid>}:s:" prefix of the user's session keys, so all of them
// share the user's hash tag and live in one Cluster slot. Times are unix
// milliseconds passed by the caller; only the index pruning in
// createSession reads the server clock, because it mirrors key expiry,
// which Redis does by its own clock.
//
// User and session records are strings holding a sequence of MessagePack
// values (see the package doc for their order), packed and unpacked with
// Redis's built-in cmsgpack; Go only ever decodes them (codec.go).
//
// Replies are status words ("ok", "unknown", ...) or arrays whose first
// element is one; the Go side maps them to the store's sentinel errors.

// recordsLua reads and writes records. A session is {cid, sc, ua, ip, g,
// ca, la, ea, ra, rr, h, u}, a user {id, name, pw, roles, dis, ca, ua};
// ra = 0 means not revoked, dis is 0 or 1. get returns the decoded record
// and its raw value, or nil; a record of the wrong shape aborts the script.
const recordsLua = `
local function get(key, n)
  local v = redis.call('GET', key)
  if not v then return nil end
  local r = {cmsgpack.unpack(v)}
  if #r ~= n then error('malformed record ' .. key) end
  return r, v
end
local function putSession(key, s)
  redis.call('SET', key, cmsgpack.pack(unpack(s, 1, 12)), 'KEEPTTL')
end
local function putUser(key, u)
  redis.call('SET', key, cmsgpack.pack(unpack(u, 1, 7)))
end
local function revokeAll(index, tag, except, now, reason)
  local n = 0
  for _, sid in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    if sid ~= except then
      local s = get(tag .. sid, 12)
      if s and s[9] == 0 and s[8] > now then
        s[9], s[10] = now, reason
        putSession(tag .. sid, s)
        n = n + 1
      end
    end
  end
  return n
end
`

// createUser stores a new user record unless the key exists.
// KEYS: user. ARGV: id, name, pw, roles, dis, ca, ua. Reply: 1, or 0 if
// the key exists.
var createUser = redis.NewScript(recordsLua + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
putUser(KEYS[1], {ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])})
return 1
`)

// updateUser replaces the password hash, roles and update time.
// KEYS: user. ARGV: pw, roles, ua. Reply: 1, or 0 if no such user.
var updateUser = redis.NewScript(recordsLua + `
local u = get(KEYS[1], 7)
if not u then return 0 end
u[3], u[4], u[7] = ARGV[1], ARGV[2], tonumber(ARGV[3])
putUser(KEYS[1], u)
return 1
`)

// setUserDisabled sets the user's disabled flag; disabling revokes every
// active session.
// KEYS: user, index. ARGV: tag, 1|0, now, reason.
// Reply: -1 no such user, else the number of sessions revoked.
var setUserDisabled = redis.NewScript(recordsLua + `
local u = get(KEYS[1], 7)
if not u then return -1 end
local now = tonumber(ARGV[3])
u[5], u[7] = tonumber(ARGV[2]), now
putUser(KEYS[1], u)
if u[5] == 1 then return revokeAll(KEYS[2], ARGV[1], '', now, ARGV[4]) end
return 0
`)

// deleteUser deletes the user record, its index and every session record
// in the index (tombstones included).
// KEYS: user, index. ARGV: tag. Reply: the username, or nil if no user.
var deleteUser = redis.NewScript(recordsLua + `
local u = get(KEYS[1], 7)
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

// createSession stores a new session, indexes it, prunes index entries
// whose records have expired, and sets both keys' expiry.
// KEYS: user, index, session.
// ARGV: sid, cid, sc, ua, ip, ca, ea, h, ea+grace, grace.
// Reply: "ok", "inactive" (user absent or disabled), "conflict".
var createSession = redis.NewScript(recordsLua + `
local u = get(KEYS[1], 7)
if not u or u[5] == 1 then return 'inactive' end
if redis.call('EXISTS', KEYS[3]) == 1 then return 'conflict' end
local ca = tonumber(ARGV[6])
redis.call('SET', KEYS[3], cmsgpack.pack(ARGV[2], ARGV[3], ARGV[4], ARGV[5], 0, ca, ca,
  tonumber(ARGV[7]), 0, '', ARGV[8], ''), 'PXAT', ARGV[9])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('(%d', now - tonumber(ARGV[10])))
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIREAT', KEYS[2], string.format('%d', tonumber(last[2]) + tonumber(ARGV[10])))
end
return 'ok'
`)

// rotate checks a presented refresh token and rotates it. The checks run
// in this order, and the first that fails decides the reply:
//
//  1. the session exists                               else "unknown"
//  2. the token is its current or a remembered used one else "unknown"
//  3. the user exists and is enabled                   else revoke, "inactive"
//  4. the session is not revoked                       else "revoked"
//  5. now < expiry                                     else "expired"
//  6. the session belongs to the presenting client     else "client"
//  7. a current token: scope check, then rotate        "ok" | "scope"
//  8. a used token: theft, revoke the session          "reused" —
//     unless it is the last used token and the current hash is the
//     requested next hash: then this is a replay of the rotation that
//     already happened (go-redis resends a command whose reply was lost
//     to a broken connection), and the same "ok" is answered again,
//     without writing. The next hash is a fresh random value per request,
//     so only that very request can match it.
//
// The token is authenticated (2) before anything else is revealed or
// written: a guess or a forgery — even with the real user and session ids,
// which access tokens carry — learns nothing about the session and changes
// nothing. The client binding (6) is checked before reuse detection (8) so
// that a client that does not own the session cannot use a stolen, used
// token to revoke it. Only 3 and 8 write besides the rotation itself.
//
// KEYS: session, user.
// ARGV: presented hash, next hash, client id, requested scope, now,
// used-token memory in bytes.
// Reply: {"ok", cid, sc, ua, ip, g, ca, la, ea, roles} or {status}.
var rotate = redis.NewScript(recordsLua + `
local s = get(KEYS[1], 12)
if not s then return {'unknown'} end
local current = s[11] == ARGV[1]
if not current then
  local p, used = string.sub(ARGV[1], 1, 8), false
  for i = 1, #s[12] - 7, 8 do
    if string.sub(s[12], i, i + 7) == p then used = true break end
  end
  if not used then return {'unknown'} end
end
local now = tonumber(ARGV[5])
local u = get(KEYS[2], 7)
if not u or u[5] == 1 then
  if s[9] == 0 then
    s[9], s[10] = now, 'user_deleted'
    if u then s[10] = 'user_disabled' end
    putSession(KEYS[1], s)
  end
  return {'inactive'}
end
if s[9] ~= 0 then return {'revoked'} end
if now >= s[8] then return {'expired'} end
if s[1] ~= ARGV[3] then return {'client'} end
if not current and s[11] == ARGV[2] and string.sub(s[12], -8) == string.sub(ARGV[1], 1, 8) then
  return {'ok', s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], u[4]}
end
if not current then
  s[9], s[10] = now, 'reuse'
  putSession(KEYS[1], s)
  return {'reused'}
end
if ARGV[4] ~= '' then
  local granted = {}
  for w in string.gmatch(s[2], '%S+') do granted[w] = true end
  for w in string.gmatch(ARGV[4], '%S+') do
    if not granted[w] then return {'scope'} end
  end
end
local used = s[12] .. string.sub(s[11], 1, 8)
local cap = tonumber(ARGV[6])
if #used > cap then used = string.sub(used, #used - cap + 1) end
s[5], s[7], s[11], s[12] = s[5] + 1, now, ARGV[2], used
putSession(KEYS[1], s)
return {'ok', s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], u[4]}
`)

// revokeSession marks one session revoked unless it already is (the first
// revocation's time and reason are kept).
// KEYS: session. ARGV: now, reason. Reply: 0 no such session, 1 done.
var revokeSession = redis.NewScript(recordsLua + `
local s = get(KEYS[1], 12)
if not s then return 0 end
if s[9] == 0 then
  s[9], s[10] = tonumber(ARGV[1]), ARGV[2]
  putSession(KEYS[1], s)
end
return 1
`)

// revokeUserSessions revokes the user's active sessions but one.
// KEYS: index. ARGV: tag, except, now, reason. Reply: how many.
var revokeUserSessions = redis.NewScript(recordsLua + `
return revokeAll(KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4])
`)

// listSessions returns the user's sessions that are active at now.
// KEYS: index. ARGV: tag, now.
// Reply: {sid, record, sid, record, ...}.
var listSessions = redis.NewScript(recordsLua + `
local out = {}
local now = tonumber(ARGV[2])
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local s, v = get(ARGV[1] .. sid, 12)
  if s and s[9] == 0 and s[8] > now then
    out[#out + 1] = sid
    out[#out + 1] = v
  end
end
return out
`)
