package redisstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/redisinfo"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/store"
)

// commandStats reads INFO commandstats.
func commandStats(t testing.TB, rdb *redis.Client) map[string]redisinfo.CommandStat {
	t.Helper()
	st, err := redisinfo.CommandStats(context.Background(), rdb)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// inner counts the commands scripts ran (everything but the EVALSHA
// calls themselves and INFO).
func inner(st map[string]redisinfo.CommandStat) int64 {
	var n int64
	for name, v := range st {
		if name != "evalsha" && name != "eval" && name != "info" && name != "config|resetstat" {
			n += v.Calls
		}
	}
	return n
}

// TestRedisCost measures, with INFO commandstats on a private Redis, what
// the scripts cost Redis per call: a rotation, and logging out everywhere
// or all others at 10 and at 10,000 sessions. It asserts what can be
// counted — the commands a logout runs inside Redis are the same for 10
// and 10,000 sessions (no loop over sessions) — and logs the time
// (usec_per_call), which is for reading, never asserted:
//
//	go test -run TestRedisCost -v ./store/redisstore/
func TestRedisCost(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 sessions")
	}
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	s, err := New(redis.NewClient(&redis.Options{Addr: srv.Addr}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	must(t, createSession.Load(ctx, rdb).Err())
	now := time.Now().Truncate(time.Millisecond)
	ua := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	newUser := func(n int) (store.User, []store.Session) {
		u := store.User{ID: randomID(), Username: "u" + randomID(), PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$" + strings.Repeat("s", 22) + "$" + strings.Repeat("h", 43),
			Roles: []string{"user"}, CreatedAt: now}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		ss := make([]store.Session, n)
		pipe := s.rdb.Pipeline()
		for i := range ss {
			ss[i] = store.Session{ID: randomID(), UserID: u.ID, ClientID: "web", Scope: "openid profile", UserAgent: ua,
				IP: "203.0.113.7", CreatedAt: now.Add(-time.Minute), ExpiresAt: now.Add(24 * time.Hour)}
			x := ss[i]
			x.UpdatedAt = x.CreatedAt
			rec, err := encodeSession(x)
			must(t, err)
			createSession.EvalSha(ctx, pipe, []string{s.userKey(u.ID), s.sessionsKey(u.ID)},
				x.ID, rec, x.CreatedAt.UnixMilli(), x.ExpiresAt.Add(store.TombstoneGrace).UnixMilli(), n+1)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		return u, ss
	}
	rotation := func(x store.Session, gen uint64) store.Rotation {
		var rq store.RequestID
		_, _ = rand.Read(rq[:])
		return store.Rotation{Presentation: store.Presentation{UserID: x.UserID, SessionID: x.ID, Generation: gen, ClientID: "web", Now: now, ReuseWindow: 30 * time.Second, RequestID: rq}}
	}

	// Rotation: one session, 2,000 rotations in a chain.
	_, ss := newUser(1)
	if _, err := s.Rotate(ctx, rotation(ss[0], 0)); err != nil { // loads the script
		t.Fatal(err)
	}
	// 20 batches of 200 rotations in a chain; the median batch is
	// reported, as the machine may be shared.
	const batches, per = 20, 200
	var perCall []float64
	var cmds int64
	gen := uint64(1)
	for range batches {
		must(t, rdb.ConfigResetStat(ctx).Err())
		for range per {
			if _, err := s.Rotate(ctx, rotation(ss[0], gen)); err != nil {
				t.Fatal(err)
			}
			gen++
		}
		st := commandStats(t, rdb)
		perCall = append(perCall, st["evalsha"].Usec/float64(st["evalsha"].Calls))
		cmds = inner(st) / per
	}
	slices.Sort(perCall)
	t.Logf("rotate: %.2f usec_per_call (evalsha; median of %d batches of %d, range %.2f-%.2f), %d commands inside per call",
		perCall[batches/2], batches, per, perCall[0], perCall[batches-1], cmds)

	// Logout everywhere / all others, 200 times each, for a user with 10
	// and with 10,000 sessions. Others: the same session logs out the
	// others again and again. Everywhere: each time from a new session
	// (started outside the measured window), which the logout ends too.
	const repeats = 200
	counts := map[string]int64{}
	for _, n := range []int{10, 10000} {
		u, ss := newUser(n)
		if _, err := s.Rotate(ctx, rotation(ss[0], 0)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // let Redis finish rehashing its key space
		// Warm up (the first calls after a burst of writes are slower,
		// whatever the number of sessions).
		for range 20 {
			l := store.Logout{Presentation: store.Presentation{UserID: u.ID, SessionID: ss[0].ID, Generation: 1, ClientID: "web", Now: now}, Scope: store.LogoutOthers}
			if _, err := s.Logout(ctx, l); err != nil {
				t.Fatal(err)
			}
		}
		for _, scope := range []store.LogoutScope{store.LogoutOthers, store.LogoutGlobal} {
			var usec, calls float64
			var cmds int64
			for k := range repeats {
				l := store.Logout{Presentation: store.Presentation{UserID: u.ID, SessionID: ss[0].ID, Generation: 1, ClientID: "web", Now: now.Add(time.Duration(k) * time.Millisecond)}, Scope: scope}
				if scope == store.LogoutGlobal {
					x := ss[0]
					x.ID, x.CreatedAt = randomID(), now.Add(time.Duration(2*k)*time.Millisecond+time.Hour)
					if _, err := s.CreateSession(ctx, store.NewSession{Session: x, Max: 1 << 20}); err != nil {
						t.Fatal(err)
					}
					l.SessionID, l.Generation, l.Now = x.ID, 0, x.CreatedAt.Add(time.Millisecond)
				}
				must(t, rdb.ConfigResetStat(ctx).Err())
				if _, err := s.Logout(ctx, l); err != nil {
					t.Fatal(err)
				}
				st := commandStats(t, rdb)
				usec += st["evalsha"].Usec
				calls += float64(st["evalsha"].Calls)
				cmds += inner(st)
			}
			if x, err := s.Session(ctx, u.ID, ss[n-1].ID); err != nil || x.Active(now) {
				t.Fatalf("the last session after the logouts: %+v, %v", x, err)
			}
			name := fmt.Sprintf("%s/%d", map[store.LogoutScope]string{store.LogoutGlobal: "global", store.LogoutOthers: "others"}[scope], n)
			counts[name] = cmds / repeats
			t.Logf("logout %-12s %6.2f usec_per_call (evalsha, %d calls), %d commands inside per call", name, usec/calls, int(calls), cmds/repeats)
		}
	}
	for _, scope := range []string{"global", "others"} {
		if counts[scope+"/10"] != counts[scope+"/10000"] {
			t.Errorf("logout %s runs %d commands at 10 sessions and %d at 10,000: it depends on the number of sessions",
				scope, counts[scope+"/10"], counts[scope+"/10000"])
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRotateRedisCost rotates one session in a chain on a private
// Redis, dated by Redis's clock as tokend serve does (ServerClock), with a
// browser's User-Agent in the record, and reports what Redis spends per
// rotation beside the usual figures, for benchstat: redis-script-µs/op,
// the script's own time (INFO commandstats, usec of evalsha; its budget
// is 15 µs, docs/performance.md), and redis-cpu-µs/op, the Redis process's CPU (INFO
// cpu), which adds reading, parsing and answering the command:
//
//	go test -run '^$' -bench RotateRedisCost -count 6 ./store/redisstore/
func BenchmarkRotateRedisCost(b *testing.B) {
	srv := testredis.StartServer(b)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	b.Cleanup(func() { rdb.Close() })
	s, err := New(redis.NewClient(&redis.Options{Addr: srv.Addr}), Options{ServerClock: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	u := store.User{ID: randomID(), Username: "u" + randomID(), Roles: []string{"user"}, CreatedAt: now,
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$" + strings.Repeat("s", 22) + "$" + strings.Repeat("h", 43)}
	if err := s.CreateUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	ses := store.Session{ID: randomID(), UserID: u.ID, ClientID: "web", Scope: "openid profile",
		UserAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		IP:        "203.0.113.7", CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	if _, err := s.CreateSession(ctx, store.NewSession{Session: ses, Max: 100}); err != nil {
		b.Fatal(err)
	}
	var gen uint64
	rotate := func() {
		var rq store.RequestID
		_, _ = rand.Read(rq[:])
		if _, err := s.Rotate(ctx, store.Rotation{Presentation: store.Presentation{UserID: u.ID, SessionID: ses.ID, Generation: gen, ClientID: "web", Now: time.Now(), ReuseWindow: 30 * time.Second, RequestID: rq}}); err != nil {
			b.Fatal(err)
		}
		gen++
	}
	rotate() // loads the script
	must(b, rdb.ConfigResetStat(ctx).Err())
	cpu0, err := redisinfo.CPUSeconds(ctx, rdb)
	must(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rotate()
	}
	b.StopTimer()
	cpu1, err := redisinfo.CPUSeconds(ctx, rdb)
	must(b, err)
	if ev := commandStats(b, rdb)["evalsha"]; ev.Calls > 0 {
		b.ReportMetric(ev.Usec/float64(ev.Calls), "redis-script-µs/op")
		b.ReportMetric((cpu1-cpu0)*1e6/float64(ev.Calls), "redis-cpu-µs/op")
	}
}
