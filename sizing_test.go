package tokend_test

// TestSessionMemory measures what users and sessions cost in Redis, for the
// sizing advice in docs/operations.md and docs/performance.md (≤ 1 KiB per live
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
	sizingUserAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)

func TestSessionMemory(t *testing.T) {
	srv := testredis.StartServer(t)
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
	addUser := func(i int) string {
		id := token.NewID()
		err := st.CreateUser(ctx, store.User{ID: id, Username: "user" + strconv.Itoa(i) + "@example.com", PasswordHash: pw,
			Roles: []string{"user"}, CreatedAt: now, UpdatedAt: now})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	addSession := func(uid string) live {
		l := live{user: uid, session: token.NewID()}
		_, err := st.CreateSession(ctx, store.NewSession{Session: store.Session{
			ID: l.session, UserID: uid, ClientID: "web", Scope: "read write", UserAgent: sizingUserAgent,
			IP: "203.0.113.42", CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(24 * time.Hour),
		}})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	rotate := func(l *live) {
		var rq store.RequestID
		_, _ = rand.Read(rq[:])
		if _, err := st.Rotate(ctx, store.Rotation{Presentation: store.Presentation{UserID: l.user, SessionID: l.session, Generation: l.gen, ClientID: "web", Now: now, RequestID: rq}}); err != nil {
			t.Fatal(err)
		}
		l.gen++
	}
	if err := st.CreateClient(ctx, store.Client{ID: "web", Public: true, Grants: []string{"password", "refresh_token"},
		Scopes: []string{"read", "write"}, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	// Warm up: load every script, so the script cache is not counted.
	warm := addSession(addUser(-1))
	rotate(&warm)

	m0 := usedMemory()
	uids := make([]string, sizingUsers)
	for i := range uids {
		uids[i] = addUser(i)
	}
	m1 := usedMemory()
	sessions := make([]live, sizingUsers)
	for i, uid := range uids {
		sessions[i] = addSession(uid)
	}
	m2 := usedMemory()
	for i := range sizingRotated {
		for range sizingRotations {
			rotate(&sessions[i])
		}
	}
	m3 := usedMemory()

	perUser := (m1 - m0) / sizingUsers
	perSession := (m2 - m1) / sizingUsers
	perRotated := perSession + (m3-m2)/sizingRotated

	usage := func(key string) int64 {
		n, err := rdb.MemoryUsage(ctx, key, 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	prefix := redisstore.DefaultPrefix
	freshKey := prefix + "{" + sessions[sizingUsers-1].user + "}:s:" + sessions[sizingUsers-1].session
	rotatedKey := prefix + "{" + sessions[0].user + "}:s:" + sessions[0].session
	indexKey := prefix + "{" + sessions[0].user + "}:sessions"
	userKey := prefix + "{" + sessions[0].user + "}:user"

	t.Logf("Redis %s, used_memory (INFO memory), %d users with one session each:", redisVersion(t, rdb), sizingUsers)
	t.Logf("  per user (user record, name key, users set):          %5d bytes", perUser)
	t.Logf("  per fresh session (session record + the user's index): %5d bytes", perSession)
	t.Logf("  per session after %d rotations:                        %5d bytes", sizingRotations, perRotated)
	t.Logf("MEMORY USAGE: session key fresh %d, rotated %d; index %d; user %d", usage(freshKey), usage(rotatedKey), usage(indexKey), usage(userKey))

	// docs/performance.md: ≤ 1 KiB per live session, fresh or rotated (a
	// rotation rewrites fixed-size fields, so a session never grows).
	if perSession > 1024 {
		t.Errorf("a fresh session takes %d bytes; the budget is 1 KiB", perSession)
	}
	if perRotated > 1024 {
		t.Errorf("a rotated session takes %d bytes; the budget is 1 KiB", perRotated)
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
