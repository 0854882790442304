package events_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/events"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/memstore"
	"github.com/tokend/tokend/store/storetest"
)

// logs returns a constructor of each Log implementation, so one suite
// checks both against the same rules.
func logs(t *testing.T) map[string]func(retention time.Duration, max int) events.Log {
	return map[string]func(time.Duration, int) events.Log{
		"memory": func(r time.Duration, max int) events.Log { return events.NewMemoryLog(r, max, nil) },
		"redis": func(r time.Duration, max int) events.Log {
			return events.NewRedisLog(testredis.Client(t), testredis.Prefix(t), r, max)
		},
	}
}

func sessionEvent(sid string) events.Event {
	now := time.Now()
	return events.Event{Kind: events.KindSession, Subject: "u1", Session: sid, Reason: store.ReasonLogout, Time: now, Until: now.Add(time.Minute)}
}

func TestLogConformance(t *testing.T) {
	ctx := context.Background()
	for name, mk := range logs(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("append and read", func(t *testing.T) {
				l := mk(time.Hour, 0)
				var ids []events.ID
				for _, sid := range []string{"s1", "s2", "s3"} {
					id, err := l.Append(ctx, sessionEvent(sid))
					if err != nil {
						t.Fatal(err)
					}
					ids = append(ids, id)
				}
				for i, id := range ids {
					if id.Seq != uint64(i+1) || (i > 0 && !ids[i-1].Less(id)) {
						t.Fatalf("ids %v: want numbered 1, 2, 3 and increasing", ids)
					}
				}
				st, err := l.State(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st.First != ids[0] || st.Last != ids[2] || st.Seq != 3 || !st.Cut.IsZero() {
					t.Fatalf("state %+v, ids %v", st, ids)
				}
				all, err := l.Read(ctx, events.ID{}, 10, 0)
				if err != nil || len(all) != 3 {
					t.Fatalf("read all: %v %v", all, err)
				}
				want := sessionEvent("s2")
				if got := all[1]; got.ID != ids[1] || got.Kind != want.Kind || got.Subject != "u1" || got.Session != "s2" ||
					got.Reason != store.ReasonLogout || got.Until.UnixMilli() != want.Until.Truncate(time.Millisecond).UnixMilli() && got.Until.IsZero() {
					t.Fatalf("read back %+v", got)
				}
				if rest, _ := l.Read(ctx, ids[1], 10, 0); len(rest) != 1 || rest[0].Session != "s3" {
					t.Fatalf("read after the second: %+v", rest)
				}
				if one, _ := l.Read(ctx, events.ID{}, 1, 0); len(one) != 1 || one[0].Session != "s1" {
					t.Fatalf("read one: %+v", one)
				}
				// A waiting read returns the next append.
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(20 * time.Millisecond)
					if _, err := l.Append(ctx, sessionEvent("s4")); err != nil {
						t.Error(err)
					}
				}()
				got, err := l.Read(ctx, ids[2], 10, 30*time.Second)
				wg.Wait()
				if err != nil || len(got) != 1 || got[0].Session != "s4" {
					t.Fatalf("waiting read: %+v %v", got, err)
				}
				if none, err := l.Read(ctx, got[0].ID, 10, 10*time.Millisecond); err != nil || len(none) != 0 {
					t.Fatalf("waiting read with nothing new: %+v %v", none, err)
				}
			})
			t.Run("invalid events are refused", func(t *testing.T) {
				l := mk(time.Hour, 0)
				for _, e := range []events.Event{
					{Kind: events.KindSession, Until: time.Now()},
					{Kind: events.KindUser, Subject: "u", Until: time.Now()},
					{Kind: events.KindClient, NotBefore: time.Now(), Until: time.Now()},
					{Kind: events.KindClientUpdated, Until: time.Now()},
					{Kind: "other", Session: "s", Until: time.Now()},
					{Kind: events.KindSession, Session: "s"},
				} {
					if _, err := l.Append(ctx, e); err == nil {
						t.Errorf("appended %+v", e)
					}
				}
			})
			t.Run("size cap is a cut", func(t *testing.T) {
				l := mk(time.Hour, 2)
				for _, sid := range []string{"s1", "s2", "s3", "s4"} {
					if _, err := l.Append(ctx, sessionEvent(sid)); err != nil {
						t.Fatal(err)
					}
				}
				st, err := l.State(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st.First.Seq != 3 || st.Last.Seq != 4 || st.Cut != st.First || st.Seq != 4 || st.LastMS != st.Last.MS {
					t.Fatalf("state after a cut: %+v", st)
				}
				now := time.Now()
				for after, want := range map[uint64]bool{0: true, 1: true, 2: false, 3: false, 4: false, 5: true} {
					if got := events.Gap(events.ID{MS: st.First.MS, Seq: after}, st, now, time.Hour); got != want {
						t.Errorf("Gap after event %d = %v, want %v", after, got, want)
					}
				}
			})
			t.Run("age trimming is not a cut", func(t *testing.T) {
				l := mk(time.Millisecond, 0)
				for _, sid := range []string{"s1", "s2", "s3"} {
					if _, err := l.Append(ctx, sessionEvent(sid)); err != nil {
						t.Fatal(err)
					}
					time.Sleep(5 * time.Millisecond)
				}
				st, err := l.State(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st.First.Seq != 3 || !st.Cut.IsZero() {
					t.Fatalf("state after trimming by age: %+v", st)
				}
				if events.Gap(events.ID{}, st, time.Now(), time.Millisecond) {
					t.Fatal("a gap reported for events dropped after the retention")
				}
			})
		})
	}
}

// The gap rule, specified once (Gap) and used by every Log.
func TestGap(t *testing.T) {
	now := time.UnixMilli(10_000_000)
	ret := time.Minute
	recent := now.Add(-time.Second).UnixMilli()
	old := now.Add(-2 * time.Minute).UnixMilli()
	for _, c := range []struct {
		name  string
		after uint64
		st    events.State
		want  bool
	}{
		{"empty log, fresh consumer", 0, events.State{}, false},
		{"fresh consumer, nothing dropped", 0, events.State{Seq: 5}, false},
		{"caught up", 5, events.State{Seq: 5}, false},
		{"consumer ahead of the log: the log was lost", 7, events.State{Seq: 5}, true},
		{"a recent cut after the consumer", 2, events.State{Seq: 9, Cut: events.ID{MS: recent, Seq: 6}}, true},
		{"a recent cut right after the consumer", 5, events.State{Seq: 9, Cut: events.ID{MS: recent, Seq: 6}}, false},
		{"a cut of events older than the retention", 2, events.State{Seq: 9, Cut: events.ID{MS: old, Seq: 6}}, false},
		{"fresh consumer after a recent cut", 0, events.State{Seq: 9, Cut: events.ID{MS: recent, Seq: 6}}, true},
	} {
		if got := events.Gap(events.ID{Seq: c.after}, c.st, now, ret); got != c.want {
			t.Errorf("%s: Gap = %v, want %v", c.name, got, c.want)
		}
	}
}

// Misplaced: the ids a log hands out resume exactly; an id whose time and
// number disagree with the log is misplaced, wherever resuming after it
// would skip an event.
func TestMisplaced(t *testing.T) {
	id := func(ms int64, seq uint64) events.ID { return events.ID{MS: ms, Seq: seq} }
	// Events 3..6 retained (1 and 2 trimmed), at times 300..600.
	st := events.State{First: id(300, 3), Last: id(600, 6), Seq: 6, LastMS: 600}
	next := func(n events.ID) *events.ID { return &n }
	for _, c := range []struct {
		name  string
		after events.ID
		next  *events.ID
		st    events.State
		want  bool
	}{
		{"no Last-Event-ID", events.ID{}, next(id(300, 3)), st, false},
		{"genuine, trimmed since", id(150, 1), next(id(300, 3)), st, false},
		{"genuine, the one before the first", id(250, 2), next(id(300, 3)), st, false},
		{"genuine, in the middle", id(400, 4), next(id(500, 5)), st, false},
		{"genuine, the last", id(600, 6), nil, st, false},
		{"genuine, the last, a newer event since", id(600, 6), next(id(700, 7)), st, false},
		{"far-future time, number in range", id(1<<50, 4), nil, st, true},
		{"far-future time, the last number", id(1<<50, 6), nil, st, true},
		{"a time after event 5's, number 4", id(550, 4), next(id(600, 6)), st, true},
		{"a time before event 3's, number 4", id(250, 4), next(id(300, 3)), st, true},
		{"everything trimmed, the last id", id(600, 6), nil, events.State{Seq: 6, LastMS: 600}, false},
		{"everything trimmed, a future time", id(900, 6), nil, events.State{Seq: 6, LastMS: 600}, true},
	} {
		if got := events.Misplaced(c.after, c.next, c.st); got != c.want {
			t.Errorf("%s: Misplaced = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestParseID(t *testing.T) {
	id, err := events.ParseID("1700000000000-42")
	if err != nil || id.MS != 1700000000000 || id.Seq != 42 || id.String() != "1700000000000-42" {
		t.Fatalf("ParseID: %+v %v", id, err)
	}
	if id, err := events.ParseID(""); err != nil || !id.IsZero() {
		t.Fatalf("empty id: %+v %v", id, err)
	}
	for _, bad := range []string{"x", "1-", "-1", "1-2-3", "1.5-2", "-5-1", "99999999999999999999999-1"} {
		if _, err := events.ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}

type failingLog struct{ events.Log }

func (failingLog) Append(context.Context, events.Event) (events.ID, error) {
	return events.ID{}, errors.New("unreachable")
}

// Every session end through the decorator is one event, with what a
// verifier needs; answers of the store that end nothing are none.
func TestStoreEmits(t *testing.T) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	ms := memstore.New()
	defer ms.Close()
	log := events.NewMemoryLog(time.Hour, 0, nil)
	st := events.Wrap(ms, log, events.Options{AccessTTL: 15 * time.Minute, Now: func() time.Time { return now }})
	if err := st.CreateUser(ctx, store.User{ID: "u1", Username: "ann", CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateClient(ctx, store.Client{ID: "web", Public: true, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	newSession := func(sid string, max int) []string {
		t.Helper()
		evicted, err := st.CreateSession(ctx, store.NewSession{Session: store.Session{ID: sid, UserID: "u1", ClientID: "web", CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}, Max: max})
		if err != nil {
			t.Fatal(err)
		}
		return evicted
	}
	for _, sid := range []string{"s1", "s2", "s3", "s4", "s5", "s6"} {
		newSession(sid, 0)
	}
	// Rotate s3, then present its first token again: reuse.
	if _, err := st.Rotate(ctx, store.Rotation{Presentation: store.Presentation{UserID: "u1", SessionID: "s3", Generation: 0, ClientID: "web", Now: now, RequestID: store.RequestID{1}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Rotate(ctx, store.Rotation{Presentation: store.Presentation{UserID: "u1", SessionID: "s3", Generation: 0, ClientID: "web", Now: now.Add(time.Minute), RequestID: store.RequestID{2}}}); !errors.Is(err, store.ErrTokenReused) {
		t.Fatalf("reuse: %v", err)
	}
	if err := st.RevokeSession(ctx, "u1", "s1", store.ReasonRevoked, now); err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeSession(ctx, "u1", "nope", store.ReasonRevoked, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	logout := func(sid string, scope store.LogoutScope) error {
		_, err := st.Logout(ctx, store.Logout{Presentation: store.Presentation{UserID: "u1", SessionID: sid, Generation: 0, ClientID: "web", Now: now}, Scope: scope})
		return err
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(logout("s4", store.LogoutLocal))
	if err := logout("s4", store.LogoutLocal); err == nil {
		t.Fatal("a second logout of an ended session succeeded")
	}
	// The cap: a seventh session with a cap of 2 evicts the least recently used.
	evicted := newSession("s7", 2)
	if len(evicted) == 0 {
		t.Fatal("nothing evicted by the cap")
	}
	must(logout("s7", store.LogoutOthers))
	now2 := now.Add(time.Second)
	if _, err := st.Logout(ctx, store.Logout{Presentation: store.Presentation{UserID: "u1", SessionID: "s7", ClientID: "web", Now: now2}, Scope: store.LogoutGlobal}); err != nil {
		t.Fatal(err)
	}
	must(st.RevokeUserSessions(ctx, "u1", "", store.ReasonRevoked, now))
	must(st.RevokeUserSessions(ctx, "u1", "", store.ReasonPassword, now)) // users set-password
	must(st.SetUserDisabled(ctx, "u1", true, now))
	must(st.SetUserDisabled(ctx, "u1", false, now))
	must(st.UpdateClient(ctx, store.Client{ID: "web", Grants: []string{"password"}}))
	if err := st.UpdateClient(ctx, store.Client{ID: "nobody"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateClient of an unknown client: %v", err)
	}
	must(st.DeleteClient(ctx, "web"))
	if err := st.DeleteClient(ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	must(st.DeleteUser(ctx, "u1"))
	got, err := log.Read(ctx, events.ID{}, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []events.Event{
		{Kind: events.KindSession, Subject: "u1", Session: "s3", Client: "web", Reason: store.ReasonReuse, Time: now.Add(time.Minute)},
		{Kind: events.KindSession, Subject: "u1", Session: "s1", Reason: store.ReasonRevoked},
		{Kind: events.KindSession, Subject: "u1", Session: "s4", Client: "web", Reason: store.ReasonLogout},
	}
	for _, sid := range evicted {
		want = append(want, events.Event{Kind: events.KindSession, Subject: "u1", Session: sid, Reason: store.ReasonEvicted})
	}
	want = append(want,
		events.Event{Kind: events.KindUser, Subject: "u1", NotBefore: now, Except: "s7", Reason: store.ReasonLogout},
		events.Event{Kind: events.KindUser, Subject: "u1", NotBefore: now2, Reason: store.ReasonLogout, Time: now2},
		events.Event{Kind: events.KindUser, Subject: "u1", NotBefore: now, Reason: store.ReasonRevoked},
		events.Event{Kind: events.KindUser, Subject: "u1", NotBefore: now, Reason: store.ReasonPassword},
		events.Event{Kind: events.KindUser, Subject: "u1", NotBefore: now, Reason: store.ReasonUserDisable},
		events.Event{Kind: events.KindClientUpdated, Client: "web", Reason: events.ReasonClientUpdated},
		events.Event{Kind: events.KindClient, Client: "web", NotBefore: now, Reason: events.ReasonClientDeleted},
		events.Event{Kind: events.KindUser, Subject: "u1", NotBefore: now, Reason: store.ReasonUserDeleted},
	)
	for _, g := range got {
		if g.Kind == events.KindUser && g.Except == "s7" && (len(g.Sessions) == 0 || slices.Contains(g.Sessions, "s7")) {
			t.Errorf("log out others names the sessions %v: want the others, not s7", g.Sessions)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if w.Time.IsZero() {
			w.Time = now
		}
		if g.Kind != w.Kind || g.Subject != w.Subject || g.Session != w.Session || g.Client != w.Client ||
			!g.NotBefore.Equal(w.NotBefore) || g.Except != w.Except || g.Reason != w.Reason || !g.Until.Equal(w.Time.Add(15*time.Minute)) || !g.Time.Equal(w.Time) {
			t.Errorf("event %d: %+v, want %+v", i, g, w)
		}
	}

	// The store's answer stands when the log cannot be written; the loss
	// is reported.
	lost := 0
	st = events.Wrap(ms, failingLog{log}, events.Options{AccessTTL: time.Minute, Lost: func() { lost++ }})
	if err := st.CreateClient(ctx, store.Client{ID: "web2", Public: true, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteClient(ctx, "web2"); err != nil {
		t.Fatalf("delete with the log down: %v", err)
	}
	if lost != 1 {
		t.Fatalf("lost = %d, want 1", lost)
	}
}

// Every store.Store method is in the emits table (TestStoreEmits checks
// what the emitting ones append), and the ones that emit nothing append
// nothing: a method added to store.Store fails here until the decorator
// says whether it emits.
func TestEveryMethodDecided(t *testing.T) {
	storetest.CheckMethodTable(t, "events' emits table", events.Emits)
	ctx := context.Background()
	log := events.NewMemoryLog(time.Hour, 0, nil)
	st := events.Wrap(memstore.New(), log, events.Options{AccessTTL: time.Minute})
	if err := st.CreateUser(ctx, store.User{ID: "u1", Username: "ann", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, m := range storetest.Methods() {
		if events.Emits[m] == "" && m != "Close" {
			_ = storetest.Call(ctx, st, m) // zero arguments: an answer or a refusal
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := log.Read(ctx, events.ID{}, 10, 0); err != nil || len(got) != 0 {
		t.Fatalf("methods listed as emitting nothing appended %+v (%v)", got, err)
	}
}

// The decorator is a store.Store like any other: the conformance suite
// holds through it.
func TestStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		st := events.Wrap(memstore.New(), events.NewMemoryLog(time.Hour, 0, nil), events.Options{AccessTTL: time.Minute})
		t.Cleanup(func() { st.Close() })
		return st
	})
}

// Each kind has its SSE event name and SET event type; the "tokend" member
// carries what a verifier acts on.
func TestFrame(t *testing.T) {
	now := time.UnixMilli(1767225600123)
	for _, c := range []struct {
		e          events.Event
		name, typ  string
		tokendKind string
	}{
		{events.Event{Kind: events.KindSession, Subject: "u1", Session: "s1", Reason: store.ReasonLogout}, events.SSESessionRevoked, events.CAEPSessionRevoked, `"kind":"session"`},
		{events.Event{Kind: events.KindUser, Subject: "u1", NotBefore: now, Reason: store.ReasonPassword}, events.SSESessionRevoked, events.CAEPSessionRevoked, `"kind":"user"`},
		{events.Event{Kind: events.KindClient, Client: "web", NotBefore: now, Reason: events.ReasonClientDeleted}, events.SSEClientDeleted, events.ClientDeleted, `"kind":"client"`},
		{events.Event{Kind: events.KindClientUpdated, Client: "web", Reason: events.ReasonClientUpdated}, events.SSEClientUpdated, events.ClientUpdated, `"kind":"client_updated"`},
	} {
		c.e.ID, c.e.Time, c.e.Until = events.ID{MS: now.UnixMilli(), Seq: 7}, now, now.Add(time.Minute)
		f := string(events.Frame(c.e, "https://auth.example.com"))
		for _, want := range []string{"id: 1767225600123-7\n", "\nevent: " + c.name + "\n", `"` + c.typ + `":`, c.tokendKind, `"jti":"1767225600123-7"`} {
			if !strings.Contains(f, want) {
				t.Errorf("%s: frame %q lacks %q", c.e.Kind, f, want)
			}
		}
	}
}

// The hub hands a subscriber every event after its position, from memory
// when it can, and tells it to read the log when it cannot.
func TestHub(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := events.NewMemoryLog(time.Hour, 0, nil)
	before, _ := log.Append(ctx, sessionEvent("old"))
	hub := events.NewHub(log, events.HubOptions{Ring: 3, Wait: 50 * time.Millisecond})
	var mu sync.Mutex
	var heard []string
	var early []string // events a subscriber could see before the listeners heard them
	hub.OnEvent(func(e events.Event) {
		evs, _, _ := hub.Since(before, 100)
		mu.Lock()
		defer mu.Unlock()
		heard = append(heard, e.Session)
		for _, it := range evs {
			if it.ID == e.ID {
				early = append(early, e.Session)
			}
		}
	})
	if _, ok, _ := hub.Since(events.ID{}, 10); ok {
		t.Fatal("a hub that has not started claims to hold history")
	}
	go hub.Run(ctx)
	// Wait for it to start: Fresh after its first read.
	for !hub.Fresh() {
		time.Sleep(time.Millisecond)
	}
	if _, ok, _ := hub.Since(events.ID{}, 10); ok {
		t.Fatal("the hub claims to hold events from before it started")
	}
	var ids []events.ID
	for _, sid := range []string{"a", "b", "c", "d", "e"} {
		_, _, changed := hub.Since(before, 10)
		id, err := log.Append(ctx, sessionEvent(sid))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		<-changed
		for {
			evs, ok, changed := hub.Since(before, 10)
			if ok && len(evs) > 0 && evs[len(evs)-1].ID == id || !ok {
				break
			}
			<-changed
		}
	}
	// Ring 3: c, d, e in memory.
	evs, ok, _ := hub.Since(ids[1], 10)
	if !ok || len(evs) != 3 || evs[0].Session != "c" || evs[2].Session != "e" {
		t.Fatalf("since b: %+v ok=%v", evs, ok)
	}
	if evs, ok, _ := hub.Since(ids[3], 1); !ok || len(evs) != 1 || evs[0].Session != "e" {
		t.Fatalf("since d: %+v ok=%v", evs, ok)
	}
	if _, ok, _ := hub.Since(ids[0], 10); ok {
		t.Fatal("since a: the hub no longer holds b but claims to")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(heard) != 5 || heard[0] != "a" || heard[4] != "e" {
		t.Fatalf("listeners heard %v", heard)
	}
	if len(early) != 0 {
		t.Fatalf("subscribers could see %v before the listeners heard them", early)
	}
}
