package tokend_test

// TestSessionMemory measures what users and sessions cost in Redis, for the
// sizing advice in docs/operations.md and docs/performance.md (≤ 300 B per live
// session). It fills a private redis-server (persistence off) through the
// real store, with the default key prefix and realistic fields, and reads
// INFO memory before and after:
//
//	go test -run TestSessionMemory -v .
import (
	"context"
	"crypto/rand"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/internal/redisinfo"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/token"
)

const (
	sizingUsers     = 2000 // one session each
	sizingRotated   = 200  // of those, rotated sizingRotations times
	sizingRotations = 40
	sizingFew       = 5   // sessions per user, for sizingFewUsers users
	sizingFewUsers  = 400 // with sizingFew sessions each
	sizingUserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	sizingBudget    = 300 // bytes per live session, indexes included (docs/performance.md)
)

func TestSessionMemory(t *testing.T) {
	// As deploy/redis.conf and the compose file set it (docs/operations.md).
	srv := testredis.StartServer(t, "--hash-max-listpack-value", strconv.Itoa(redisstore.ListpackValue))
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	st, err := redisstore.New(rdb, redisstore.Options{}) // default prefix, tokend:
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	usedMemory := func() int64 {
		t.Helper()
		info, err := redisinfo.Read(ctx, rdb, "memory")
		if err != nil {
			t.Fatal(err)
		}
		n, ok := info.Int("used_memory")
		if !ok {
			t.Fatalf("INFO memory has no used_memory: %v", info)
		}
		return n
	}
	// A real argon2id hash at the default (OWASP) parameters, shared by
	// every user: its size, not its work, is what matters here.
	pw, err := credential.NewHasher(credential.DefaultArgon2(), 0).Hash(ctx, "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	type live struct {
		user, session string
		gen           uint64
	}
	n := 0
	addUser := func() string {
		id := token.NewID()
		n++
		err := st.CreateUser(ctx, store.User{ID: id, Username: "user" + strconv.Itoa(n) + "@example.com", PasswordHash: pw,
			Roles: []string{"user"}, CreatedAt: now, UpdatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	addSession := func(uid string, proof *store.Proof) live {
		l := live{user: uid, session: token.NewID()}
		_, err := st.CreateSession(ctx, store.NewSession{Session: store.Session{
			ID: l.session, UserID: uid, ClientID: "web", KeyID: "abcdefgh", Scope: "read write", UserAgent: sizingUserAgent,
			IP: "203.0.113.42", CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(24 * time.Hour),
		}, Proof: proof})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	rotate := func(l *live) {
		var rq store.RequestID
		_, _ = rand.Read(rq[:])
		if _, err := st.Rotate(ctx, store.Rotation{Presentation: store.Presentation{UserID: l.user, SessionID: l.session,
			Generation: l.gen, KeyID: "abcdefgh", ClientID: "web", Now: now, RequestID: rq}}); err != nil {
			t.Fatal(err)
		}
		l.gen++
	}
	if err := st.CreateClient(ctx, store.Client{ID: "web", Public: true, Grants: []string{"password", "refresh_token"},
		Scopes: []string{"read", "write"}, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	// Warm up: load every script, so the script cache is not counted.
	warm := addSession(addUser(), nil)
	rotate(&warm)

	users := func(k int) []string {
		uids := make([]string, k)
		for i := range uids {
			uids[i] = addUser()
		}
		return uids
	}
	// One session per user: the worst case, the sessions hash's own
	// overhead is all the session's.
	m0 := usedMemory()
	uids := users(sizingUsers)
	m1 := usedMemory()
	sessions := make([]live, sizingUsers)
	for i, uid := range uids {
		sessions[i] = addSession(uid, nil)
	}
	m2 := usedMemory()
	for i := range sizingRotated {
		for range sizingRotations {
			rotate(&sessions[i])
		}
	}
	m3 := usedMemory()
	// A few sessions per user.
	few := users(sizingFewUsers)
	m4 := usedMemory()
	for _, uid := range few {
		for range sizingFew {
			addSession(uid, nil)
		}
	}
	m5 := usedMemory()
	// One DPoP-bound session per user (its key's thumbprint in the record).
	bound := users(sizingUsers)
	m6 := usedMemory()
	for _, uid := range bound {
		p := &store.Proof{JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", ID: token.NewID(), Expiry: time.Now().Add(time.Hour)}
		addSession(uid, p)
		// The proof's replay id lives for the proof's minute, not the
		// session's lifetime: not counted here.
		if err := rdb.Del(ctx, redisstore.DefaultPrefix+"{"+uid+"}:p:"+p.ID).Err(); err != nil {
			t.Fatal(err)
		}
	}
	m7 := usedMemory()

	perUser := (m1 - m0) / sizingUsers
	perSession := (m2 - m1) / sizingUsers
	perRotated := perSession + (m3-m2)/sizingRotated
	perFew := (m5 - m4) / (sizingFewUsers * sizingFew)
	perBound := (m7 - m6) / sizingUsers

	usage := func(key string) int64 {
		n, err := rdb.MemoryUsage(ctx, key, 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	prefix := redisstore.DefaultPrefix
	sessionsKey := prefix + "{" + sessions[0].user + "}:s"
	userKey := prefix + "{" + sessions[0].user + "}:user"
	enc, _ := rdb.ObjectEncoding(ctx, sessionsKey).Result()

	t.Logf("Redis %s, used_memory (INFO memory), hash-max-listpack-value %d:", redisVersion(t, rdb), redisstore.ListpackValue)
	t.Logf("  per user (user record, name key, users set):             %5d bytes", perUser)
	t.Logf("  per session, one per user (%d users):                  %5d bytes", sizingUsers, perSession)
	t.Logf("  per session after %d rotations:                          %5d bytes", sizingRotations, perRotated)
	t.Logf("  per session, %d per user (%d users):                      %5d bytes", sizingFew, sizingFewUsers, perFew)
	t.Logf("  per DPoP-bound session, one per user (%d users):       %5d bytes", sizingUsers, perBound)
	t.Logf("MEMORY USAGE: sessions of a user with one %d (%s); user %d", usage(sessionsKey), enc, usage(userKey))

	// docs/performance.md: at most sizingBudget bytes per live session
	// with a browser's User-Agent, indexes included, fresh or rotated (a
	// rotation rewrites fixed-size fields, so a session never grows).
	for what, got := range map[string]int64{"a fresh session": perSession, "a rotated session": perRotated, "one of a few sessions": perFew} {
		if got > sizingBudget {
			t.Errorf("%s takes %d bytes; the budget is %d", what, got, sizingBudget)
		}
	}
	if enc != "listpack" {
		t.Errorf("a user's sessions are encoded as %s, want listpack", enc)
	}
}
func redisVersion(t *testing.T, rdb *redis.Client) string {
	info, err := redisinfo.Read(context.Background(), rdb, "server")
	if err != nil {
		t.Fatal(err)
	}
	if v := info["redis_version"]; v != "" {
		return v
	}
	return "?"
}
