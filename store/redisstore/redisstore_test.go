package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/storetest"
)

// newStore returns a Store on the shared test Redis under a prefix of its
// own, deleted when the test ends.
func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), testredis.URL(t), Options{Prefix: testredis.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newStore(t) })
}

// TestConformanceCluster runs the suite on a three-master Redis Cluster,
// which refuses any command or script whose keys span hash slots or
// nodes: it proves the key layout and the scripts are Cluster-safe.
func TestConformanceCluster(t *testing.T) {
	nodes := testredis.StartCluster(t, 3)
	url := testredis.ClusterURL(nodes)
	rdb, err := NewClient(url)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Eval(ctx, `return 1`, []string{"{a}x", "{b}x"}).Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("sanity: a cross-slot script was not refused: %v", err)
	}
	// A script that builds a key of another node is refused.
	err = rdb.Eval(ctx, `return redis.call('GET', ARGV[1])`, []string{"{a}x"}, "{b}x").Err()
	if err == nil || errors.Is(err, redis.Nil) {
		t.Fatalf("sanity: a script reaching another node's key was not refused: %v", err)
	}
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(ctx, url, Options{Prefix: testredis.Prefix(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestOpenSentinel opens a store through a Sentinel URL.
func TestOpenSentinel(t *testing.T) {
	master := testredis.StartServer(t)
	s1 := testredis.StartSentinel(t, "tokend", master)
	s2 := testredis.StartSentinel(t, "tokend", master)
	ctx := context.Background()
	s, err := Open(ctx, "redis+sentinel://"+s1.Addr+","+s2.Addr+"/0?master_name=tokend", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u := store.User{ID: "sentineluser", Username: "sentinel"}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	direct := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer direct.Close()
	if n := direct.Exists(ctx, "tokend:{sentineluser}:user").Val(); n != 1 {
		t.Fatal("the user was not written to the master")
	}
}

func TestNewClientURLs(t *testing.T) {
	for _, c := range []struct{ url, want string }{
		{"redis://:pw@localhost:6379/2", "*redis.Client"},
		{"rediss://localhost", "*redis.Client"},
		{"unix:///tmp/redis.sock", "*redis.Client"},
		{"redis+sentinel://h1:26379,h2:26379/1?master_name=m", "*redis.Client"},
		{"REDIS+SENTINEL://u:p@h1:26379?master_name=m&dial_timeout=1s", "*redis.Client"},
		{"redis+cluster://h1:7000,h2:7001,h3:7002", "*redis.ClusterClient"},
		{"rediss+cluster://u:p@h1:7000,h2:7001?pool_size=5#frag", "*redis.ClusterClient"},
	} {
		rdb, err := NewClient(c.url)
		if err != nil {
			t.Errorf("%s: %v", c.url, err)
			continue
		}
		if got := typeName(rdb); got != c.want {
			t.Errorf("%s: %s, want %s", c.url, got, c.want)
		}
		rdb.Close()
	}
	for _, bad := range []string{
		"localhost:6379", "http://x", "redis+sentinel://h1:26379", "redis+cluster://h:1?bogus=1",
		"redis://:secretpw@h:1/x", "redis+sentinel://:secretpw@h1:26379?master_name=m&nope=1",
		"redis://:secretpw@h:port/0", "redis+foo://h",
	} {
		if _, err := NewClient(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		} else if strings.Contains(err.Error(), "secretpw") {
			t.Errorf("%s: error repeats the password: %v", bad, err)
		}
	}
	if _, err := Open(context.Background(), "redis://127.0.0.1:1?max_retries=-1&dialer_retries=1", Options{}); err == nil {
		t.Error("Open of a closed port succeeded")
	}
	if _, err := Open(context.Background(), "nope", Options{}); err == nil {
		t.Error("Open of a bad URL succeeded")
	}
	if _, err := Open(context.Background(), testredis.URL(t), Options{Prefix: "{x}"}); err == nil {
		t.Error("Open with a bad prefix succeeded")
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *redis.Client:
		return "*redis.Client"
	case *redis.ClusterClient:
		return "*redis.ClusterClient"
	}
	return "?"
}

func TestNewOptions(t *testing.T) {
	rdb := testredis.Client(t)
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil) succeeded")
	}
	for _, o := range []Options{{Prefix: "a{b"}, {Prefix: "a}"}} {
		if _, err := New(rdb, o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
	s, err := New(rdb, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.prefix != DefaultPrefix || s.Redis() != rdb {
		t.Fatalf("defaults: %+v", s)
	}
}

// fixture is a store with a user and one live session.
type fixture struct {
	s   *Store
	rdb *redis.Client
	ctx context.Context
	now time.Time
	u   store.User
	ses store.Session
}

func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	opts.Prefix = testredis.Prefix(t)
	s, err := New(testredis.Client(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{s: s, rdb: testredis.Client(t), ctx: context.Background(), now: time.Now().Truncate(time.Millisecond)}
	f.u = store.User{ID: "u" + randomID(), Username: "alice", PasswordHash: strings.Repeat("p", 97), Roles: []string{"user"}, CreatedAt: f.now}
	if err := s.CreateUser(f.ctx, f.u); err != nil {
		t.Fatal(err)
	}
	f.ses = f.session(t)
	return f
}

func (f *fixture) session(t testing.TB) store.Session {
	t.Helper()
	ses := store.Session{ID: randomID(), UserID: f.u.ID, ClientID: "web", Scope: "openid profile",
		UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
		IP:        "203.0.113.17", CreatedAt: f.now, ExpiresAt: f.now.Add(24 * time.Hour)}
	if _, err := f.s.CreateSession(f.ctx, store.NewSession{Session: ses}); err != nil {
		t.Fatal(err)
	}
	return ses
}

func (f *fixture) rotation(gen uint64) store.Rotation {
	var rq store.RequestID
	_, _ = rand.Read(rq[:])
	return store.Rotation{Presentation: store.Presentation{UserID: f.u.ID, SessionID: f.ses.ID, Generation: gen, ClientID: "web", Now: f.now, RequestID: rq}}
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// randomID returns an id shaped like token.NewID's.
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}

// patchUser sets value i (1-based, in getUser's order; a number if v is
// numeric) of a user record.
func (f *fixture) patchUser(t testing.TB, key string, i int, v string) {
	t.Helper()
	err := f.rdb.Eval(f.ctx, recordsLua+`
local u = getUser(KEYS[1])
u[tonumber(ARGV[1])] = tonumber(ARGV[2]) or ARGV[2]
putUser(KEYS[1], u)`, []string{key}, i, v).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
}

// userKeys returns every key of the fixture's prefix.
func (f *fixture) keys(t testing.TB) []string {
	t.Helper()
	keys, err := f.rdb.Keys(f.ctx, f.s.prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestSessionRecordLayout: a session record is the fixed layout of
// scripts.go — nothing about a refresh token but its generation, the user
// agent compressed, the address in binary — and a rotation rewrites only
// the header.
func TestSessionRecordLayout(t *testing.T) {
	f := newFixture(t, Options{})
	key := f.s.sessionsKey(f.u.ID)
	before := f.rdb.HGet(f.ctx, key, f.ses.ID).Val()
	fixed := sessionHeader + 9 + len(f.ses.KeyID) + len("web") + len("openid profile") + 1 + 4 // the IPv4 address in binary
	if before[0] != sessionVersion || len(before) <= fixed || len(before) > fixed+16 {
		t.Fatalf("record: %d bytes, want %d and the compressed user agent (at most 16 bytes)", len(before), fixed)
	}
	if _, err := f.s.Rotate(f.ctx, f.rotation(0)); err != nil {
		t.Fatal(err)
	}
	after := f.rdb.HGet(f.ctx, key, f.ses.ID).Val()
	if len(after) != len(before) || after[sessionHeader:] != before[sessionHeader:] || after[:sessionHeader] == before[:sessionHeader] {
		t.Fatal("a rotation changed more than the header, or not the header")
	}
}

// TestSessionFieldForms: every stored form decodes to exactly what was
// given — canonical addresses and thumbprints in binary, anything else
// as it is — and a browser's user agent is stored in a few bytes.
func TestSessionFieldForms(t *testing.T) {
	for _, ip := range []string{"", "203.0.113.7", "2001:db8::1", "::ffff:192.0.2.1", "::1", "0.0.0.0", "fe80::1%eth0",
		"2001:DB8::1", "01.2.3.4", "not an address", "\x00\x01", "1.2.3.4 "} {
		if got, err := decodeIP(encodeIP(ip)); err != nil || got != ip {
			t.Errorf("IP %q: stored and read as %q, %v", ip, got, err)
		}
	}
	if n := len(encodeIP("203.0.113.7")); n != 5 {
		t.Errorf("an IPv4 address takes %d bytes", n)
	}
	for _, jkt := range []string{"", "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4J",
		"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4", "jkt-A", "\x01" + strings.Repeat("x", 32)} {
		if got, err := decodeJKT(encodeJKT(jkt)); err != nil || got != jkt {
			t.Errorf("thumbprint %q: stored and read as %q, %v", jkt, got, err)
		}
	}
	if n := len(encodeJKT("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")); n != 33 {
		t.Errorf("a thumbprint takes %d bytes", n)
	}
}

// TestUserAgentCompression: user agents are stored exactly, browsers'
// in a few bytes, and anything the dictionary does not help with never
// grows by more than its form byte.
func TestUserAgentCompression(t *testing.T) {
	for _, ua := range []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
	} {
		v := encodeUA(ua)
		if got, err := decodeUA(v); err != nil || got != ua {
			t.Fatalf("%q: read back as %q, %v", ua, got, err)
		}
		if len(v) > 17 {
			t.Errorf("%q (%d bytes) is stored in %d bytes, want at most 17", ua, len(ua), len(v))
		}
	}
	for _, ua := range []string{"", "curl/8.5.0", "é", strings.Repeat("\xff", 256), strings.Repeat("x", 256)} {
		v := encodeUA(ua)
		if got, err := decodeUA(v); err != nil || got != ua || len(v) > len(ua)+1 {
			t.Errorf("%q: stored in %d bytes, read back as %q, %v", ua, len(v), got, err)
		}
	}
	if _, err := decodeUA("\x01\xff\xff"); err == nil {
		t.Error("a corrupt compressed user agent decoded")
	}
}

// TestUserKeysShareASlot: every key of one user (record, sessions, proof
// ids) carries the user's hash tag, so all hash to one Cluster slot.
func TestUserKeysShareASlot(t *testing.T) {
	f := newFixture(t, Options{})
	s2 := f.session(t)
	if err := f.s.RevokeSession(f.ctx, f.u.ID, s2.ID, store.ReasonLogout, f.now); err != nil {
		t.Fatal(err)
	}
	r := f.rotation(0)
	r.Proof = &store.Proof{JKT: "k", ID: randomID(), Expiry: time.Now().Add(time.Hour)}
	if _, err := f.s.Rotate(f.ctx, r); err != nil {
		t.Fatal(err)
	}
	var userKeys []string
	for _, k := range f.keys(t) {
		if strings.Contains(k, "{") {
			userKeys = append(userKeys, k)
		}
	}
	if len(userKeys) != 3 { // user, sessions, a proof id
		t.Fatalf("user keys: %q", userKeys)
	}
	want := slot(f.s.userKey(f.u.ID))
	for _, k := range userKeys {
		if hashTag(k) != f.u.ID || slot(k) != want {
			t.Errorf("key %q: tag %q slot %d, want tag %q slot %d", k, hashTag(k), slot(k), f.u.ID, want)
		}
	}
	if slot("123456789") != 12739 || slot("{user1000}.following") != slot("{user1000}.followers") {
		t.Fatal("sanity: CRC16 slot function is wrong")
	}
}

// hashTag returns the part of key Redis Cluster hashes.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// slot is Redis Cluster's CRC16-XMODEM(hashTag(key)) mod 16384.
func slot(key string) int {
	var crc uint16
	for _, c := range []byte(hashTag(key)) {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// TestKeyExpiry: the sessions hash expires with its longest-lived
// record (a tombstone grace after the session), and holds at most the
// cap of records: those gone or of an earlier layout are dropped first,
// then the least recently used ended ones.
func TestKeyExpiry(t *testing.T) {
	f := newFixture(t, Options{})
	key := f.s.sessionsKey(f.u.ID)
	expiry := func() time.Duration { return f.rdb.PExpireTime(f.ctx, key).Val() }
	ms := func(t time.Time) time.Duration { return time.Duration(t.UnixMilli()) * time.Millisecond }
	if at := expiry(); at != ms(f.ses.ExpiresAt.Add(store.TombstoneGrace)) {
		t.Fatalf("sessions expire at %v, want %v", at, ms(f.ses.ExpiresAt.Add(store.TombstoneGrace)))
	}
	// A longer session moves the expiry out; a shorter one not.
	long := f.ses
	long.ID, long.ExpiresAt = randomID(), f.now.Add(48*time.Hour)
	short := f.ses
	short.ID, short.ExpiresAt = randomID(), f.now.Add(time.Hour)
	for _, s := range []store.Session{long, short} {
		if _, err := f.s.CreateSession(f.ctx, store.NewSession{Session: s}); err != nil {
			t.Fatal(err)
		}
	}
	if at := expiry(); at != ms(long.ExpiresAt.Add(store.TombstoneGrace)) {
		t.Fatalf("sessions expire at %v, want the longest session's", at)
	}
	// Records gone or of an earlier layout are dropped when the cap is
	// reached; an ended one only when there is no room for the new one.
	gone := f.ses
	gone.ID, gone.CreatedAt, gone.ExpiresAt = randomID(), f.now.Add(-3*time.Hour), f.now.Add(-2*time.Hour)
	rec, err := encodeSession(gone)
	must(t, err)
	f.rdb.HSet(f.ctx, key, gone.ID, rec, "old"+randomID(), "\x02old layout")
	must(t, f.s.RevokeSession(f.ctx, f.u.ID, short.ID, store.ReasonLogout, f.now))
	s := f.ses
	s.ID = randomID()
	ev, err := f.s.CreateSession(f.ctx, store.NewSession{Session: s, Max: 4})
	if err != nil || len(ev) != 0 {
		t.Fatalf("CreateSession: evicted %v, %v", ev, err)
	}
	ids, err := f.rdb.HKeys(f.ctx, key).Result()
	must(t, err)
	slices.Sort(ids)
	want := []string{f.ses.ID, long.ID, short.ID, s.ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("records after a sign-in at the cap: %v, want %v", ids, want)
	}
	s2 := f.ses
	s2.ID = randomID()
	if ev, err := f.s.CreateSession(f.ctx, store.NewSession{Session: s2, Max: 4}); err != nil || len(ev) != 0 {
		t.Fatalf("CreateSession with 3 active sessions of 4 records, cap 4: evicted %v, %v", ev, err)
	}
	ids, err = f.rdb.HKeys(f.ctx, key).Result()
	must(t, err)
	if len(ids) != 4 || slices.Contains(ids, short.ID) {
		t.Fatalf("records after a sign-in with no room: %v, want 4 without the ended one", ids)
	}
}

// TestRotateInactiveUser covers states the API cannot reach on its own:
// a session whose user record vanished, or was disabled without the
// sessions being revoked.
func TestRotateInactiveUser(t *testing.T) {
	f := newFixture(t, Options{})
	f.patchUser(t, f.s.userKey(f.u.ID), 5, "1") // disabled, sessions not ended
	if _, err := f.s.Rotate(f.ctx, f.rotation(0)); !errors.Is(err, store.ErrUserInactive) {
		t.Fatalf("disabled: %v", err)
	}
	if g, _ := f.s.Session(f.ctx, f.u.ID, f.ses.ID); g.RevokeReason != store.ReasonUserDisable {
		t.Fatalf("disabled: %+v", g)
	}
	g := newFixture(t, Options{})
	g.rdb.Del(g.ctx, g.s.userKey(g.u.ID))
	if _, err := g.s.Rotate(g.ctx, g.rotation(0)); !errors.Is(err, store.ErrUserInactive) {
		t.Fatalf("deleted: %v", err)
	}
	if s, _ := g.s.Session(g.ctx, g.u.ID, g.ses.ID); s.RevokeReason != store.ReasonUserDeleted {
		t.Fatalf("deleted: %+v", s)
	}
}

// TestNameReclaim: a username key left pointing at a missing user (an
// interrupted DeleteUser) does not block the name forever, and a stale
// name key never resolves to a user.
func TestNameReclaim(t *testing.T) {
	f := newFixture(t, Options{})
	f.rdb.Set(f.ctx, f.s.nameKey("bob"), "ghost", 0)
	if _, err := f.s.UserByName(f.ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UserByName through a stale name key: %v", err)
	}
	bob := store.User{ID: "bob" + randomID(), Username: "Bob"}
	if err := f.s.CreateUser(f.ctx, bob); err != nil {
		t.Fatalf("CreateUser over a stale name key: %v", err)
	}
	if u, err := f.s.UserByName(f.ctx, "BOB"); err != nil || u.ID != bob.ID {
		t.Fatalf("UserByName: %+v %v", u, err)
	}
	// A name key pointing at another user's record resolves to nothing.
	f.rdb.Set(f.ctx, f.s.nameKey("carol"), f.u.ID, 0)
	if _, err := f.s.UserByName(f.ctx, "carol"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UserByName through a mismatched name key: %v", err)
	}
	// A user id left in the user set without a record is skipped, and
	// DeleteUser cleans it.
	f.rdb.SAdd(f.ctx, f.s.usersKey(), "ghost")
	users, err := f.s.ListUsers(f.ctx)
	if err != nil || len(users) != 2 {
		t.Fatalf("ListUsers: %+v %v", users, err)
	}
	if err := f.s.DeleteUser(f.ctx, "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	if f.rdb.SIsMember(f.ctx, f.s.usersKey(), "ghost").Val() {
		t.Fatal("ghost id left in the user set")
	}
}

// TestLookAlikeIndexOfOlderUsers: users created before skeleton keys
// existed (no look: key, no marker) are indexed by the next CreateUser,
// so a look-alike of theirs is refused; a stale skeleton key (its user
// gone) is taken over.
func TestLookAlikeIndexOfOlderUsers(t *testing.T) {
	f := newFixture(t, Options{})
	f.rdb.Del(f.ctx, f.s.lookKey("alice"), f.s.prefix+"looks-indexed")                     // as an older tokend left it
	err := f.s.CreateUser(f.ctx, store.User{ID: "u" + randomID(), Username: "\u0430lice"}) // Cyrillic а
	if !errors.Is(err, store.ErrLookAlike) {
		t.Fatalf("a look-alike of a user created before the index: %v", err)
	}
	if id := f.rdb.Get(f.ctx, f.s.lookKey("alice")).Val(); id != f.u.ID {
		t.Fatalf("alice's skeleton key holds %q, want %q", id, f.u.ID)
	}
	f.rdb.Set(f.ctx, f.s.lookKey("bob"), "ghost", 0)
	if err := f.s.CreateUser(f.ctx, store.User{ID: "u" + randomID(), Username: "b0b"}); err != nil {
		t.Fatalf("CreateUser over a stale skeleton key: %v", err)
	}
}

// TestOldUserRecord: a user record of version 2 (before LastSignIn) is
// read, by Go and by the scripts, as one with no last sign-in, and the
// next write converts it; one of the MessagePack layout before it is an
// error that names the upgrade notes, never a user that does not exist.
func TestOldUserRecord(t *testing.T) {
	f := newFixture(t, Options{})
	err := f.rdb.Eval(f.ctx, `
redis.call('SET', KEYS[1], struct.pack('>BBi8i8i8Hc0Hc0Hc0Hc0Hc0Hc0', 2, 0, tonumber(ARGV[3]), tonumber(ARGV[3]), 0,
  4, 'user', 0, '', 0, '', #ARGV[1], ARGV[1], 5, 'alice', #ARGV[2], ARGV[2]))`,
		[]string{f.s.userKey(f.u.ID)}, f.u.ID, f.u.PasswordHash, f.now.UnixMilli()).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	u, err := f.s.User(f.ctx, f.u.ID)
	if err != nil || u.Username != "alice" || u.PasswordHash != f.u.PasswordHash || !u.LastSignIn.IsZero() || !u.SessionsEnded.IsZero() {
		t.Fatalf("version 2 user record: %+v, %v", u, err)
	}
	if _, err := f.s.Rotate(f.ctx, f.rotation(0)); err != nil {
		t.Fatal(err)
	}
	if err := f.s.RevokeUserSessions(f.ctx, f.u.ID, "", store.ReasonLogout, f.now); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Rotate(f.ctx, f.rotation(1)); !errors.Is(err, store.ErrTokenRevoked) {
		t.Fatalf("after log out everywhere: %v", err)
	}
	if v := f.rdb.Get(f.ctx, f.s.userKey(f.u.ID)).Val(); v[0] != userVersion {
		t.Fatalf("the write left a version %d record", v[0])
	}

	err = f.rdb.Eval(f.ctx, `
redis.call('SET', KEYS[1], cmsgpack.pack(ARGV[1], 'alice', ARGV[2], 'user', 0, tonumber(ARGV[3]), tonumber(ARGV[3])))`,
		[]string{f.s.userKey(f.u.ID)}, f.u.ID, f.u.PasswordHash, f.now.UnixMilli()).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	_, err = f.s.User(f.ctx, f.u.ID)
	if !errors.Is(err, errOldUser) {
		t.Fatalf("MessagePack user record: %v", err)
	}
	if _, err := f.s.Rotate(f.ctx, f.rotation(0)); err == nil || errors.Is(err, store.ErrUserInactive) ||
		!strings.Contains(err.Error(), "docs/operations.md") {
		t.Fatalf("Rotate with a MessagePack user record: %v", err)
	}
}

// TestOldSessionRecord: a session of an earlier layout (a string key and
// an index entry, version 2) is unknown: not found, not listed, not
// rotated; its keys are left to expire.
func TestOldSessionRecord(t *testing.T) {
	f := newFixture(t, Options{})
	old := randomID()
	tag := f.s.userTag(f.u.ID)
	err := f.rdb.Eval(f.ctx, `
redis.call('SET', KEYS[1], '\2' .. string.rep('\0', 48), 'PX', 60000)
redis.call('ZADD', KEYS[2], 0, ARGV[1])`, []string{tag + "s:" + old, tag + "sessions"}, old).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	if _, err := f.s.Session(f.ctx, f.u.ID, old); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Session of an old record: %v", err)
	}
	if ss, err := f.s.ListSessions(f.ctx, f.u.ID, f.now); err != nil || len(ss) != 1 || ss[0].ID != f.ses.ID {
		t.Fatalf("ListSessions with an old record: %+v, %v", ss, err)
	}
	r := f.rotation(0)
	r.SessionID = old
	if _, err := f.s.Rotate(f.ctx, r); !errors.Is(err, store.ErrTokenUnknown) {
		t.Fatalf("Rotate of an old record: %v", err)
	}
	if _, err := f.s.Rotate(f.ctx, f.rotation(0)); err != nil {
		t.Fatalf("Rotate beside an old record: %v", err)
	}
}

// TestUnavailable: transport errors are wrapped, never mistaken for a
// sentinel.
func TestUnavailable(t *testing.T) {
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 100 * time.Millisecond})
	s, err := New(rdb, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv.Kill()
	ctx := context.Background()
	now := time.Now()
	u := store.User{ID: "x", Username: "x"}
	calls := map[string]func() error{
		"Ping":            func() error { return s.Ping(ctx) },
		"CreateUser":      func() error { return s.CreateUser(ctx, u) },
		"User":            func() error { _, err := s.User(ctx, "x"); return err },
		"UserByName":      func() error { _, err := s.UserByName(ctx, "x"); return err },
		"ListUsers":       func() error { _, err := s.ListUsers(ctx); return err },
		"UpdateUser":      func() error { return s.UpdateUser(ctx, u) },
		"SetUserDisabled": func() error { return s.SetUserDisabled(ctx, "x", true, now) },
		"DeleteUser":      func() error { return s.DeleteUser(ctx, "x") },
		"CreateClient":    func() error { return s.CreateClient(ctx, store.Client{ID: "c"}) },
		"Client":          func() error { _, err := s.Client(ctx, "c"); return err },
		"ListClients":     func() error { _, err := s.ListClients(ctx); return err },
		"DeleteClient":    func() error { return s.DeleteClient(ctx, "c") },
		"CreateSession": func() error {
			_, err := s.CreateSession(ctx, store.NewSession{Session: store.Session{ID: "s", UserID: "x"}})
			return err
		},
		"Rotate": func() error {
			_, err := s.Rotate(ctx, store.Rotation{Presentation: store.Presentation{UserID: "x", SessionID: "s"}})
			return err
		},
		"Logout": func() error {
			_, err := s.Logout(ctx, store.Logout{Presentation: store.Presentation{UserID: "x", SessionID: "s"}})
			return err
		},
		"UseProof": func() error {
			return s.UseProof(ctx, store.Proof{ID: "p", Expiry: time.Now().Add(time.Minute)}, store.RequestID{1})
		},
		"Session":            func() error { _, err := s.Session(ctx, "x", "s"); return err },
		"ListSessions":       func() error { _, err := s.ListSessions(ctx, "x", now); return err },
		"RevokeSession":      func() error { return s.RevokeSession(ctx, "x", "s", "", now) },
		"RevokeUserSessions": func() error { return s.RevokeUserSessions(ctx, "x", "", "", now) },
	}
	sentinels := []error{store.ErrNotFound, store.ErrConflict, store.ErrTokenUnknown, store.ErrTokenExpired,
		store.ErrTokenRevoked, store.ErrTokenReused, store.ErrClientMismatch, store.ErrUserInactive, store.ErrScopeWidened}
	for name, call := range calls {
		err := call()
		if err == nil || !strings.HasPrefix(err.Error(), "redisstore: ") {
			t.Errorf("%s with Redis down: %v", name, err)
		}
		for _, se := range sentinels {
			if errors.Is(err, se) {
				t.Errorf("%s with Redis down: %v is a sentinel", name, err)
			}
		}
	}
}

// TestRotationKeepsSize: a rotation rewrites fixed-size fields, so a
// session never grows (TestSessionMemory at the repository root measures
// what sessions cost).
func TestRotationKeepsSize(t *testing.T) {
	f := newFixture(t, Options{})
	key := f.s.sessionsKey(f.u.ID)
	fresh := len(f.rdb.HGet(f.ctx, key, f.ses.ID).Val())
	for gen := range uint64(40) {
		if _, err := f.s.Rotate(f.ctx, f.rotation(gen)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.rdb.HGet(f.ctx, key, f.ses.ID).Val()); n != fresh {
		t.Fatalf("after 40 rotations the record takes %d bytes, fresh %d", n, fresh)
	}
}

// BenchmarkRotate rotates one session in a chain, one rotation at a time.
func BenchmarkRotate(b *testing.B) {
	f := newFixture(b, Options{})
	var gen uint64
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.s.Rotate(f.ctx, f.rotation(gen)); err != nil {
			b.Fatal(err)
		}
		gen++
	}
}

// BenchmarkRotateParallel rotates one session per goroutine, 16
// goroutines per CPU at once (throughput of the script under load).
func BenchmarkRotateParallel(b *testing.B) {
	f := newFixture(b, Options{})
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ses := f.session(b)
		var gen uint64
		for pb.Next() {
			r := store.Rotation{Presentation: store.Presentation{UserID: f.u.ID, SessionID: ses.ID, Generation: gen, ClientID: "web", Now: f.now}}
			if _, err := f.s.Rotate(f.ctx, r); err != nil {
				b.Error(err)
				return
			}
			gen++
		}
	})
}

func BenchmarkCreateSession(b *testing.B) {
	f := newFixture(b, Options{})
	ses := f.ses
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ses.ID = randomID()
		if _, err := f.s.CreateSession(f.ctx, store.NewSession{Session: ses, Max: 1 << 20}); err != nil {
			b.Fatal(err)
		}
	}
}
