package memstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testclock"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/storetest"
)

func newTestStore(t *testing.T) store.Store {
	s := New()
	t.Cleanup(func() { s.Close() })
	return s
}

// clockedStore returns a store on a settable clock, sweeping every
// interval, and the clock's start; it is closed when the test ends.
func clockedStore(t *testing.T, every time.Duration) (*Store, *testclock.Clock, time.Time) {
	now := time.Now().Truncate(time.Millisecond)
	clock := testclock.New(now)
	s := newStore(clock.Now, every)
	t.Cleanup(func() { s.Close() })
	return s, clock, now
}

func TestConformance(t *testing.T) {
	storetest.Run(t, newTestStore)
}

// TestSweeper: the sweeper deletes session records a tombstone grace
// after their expiry, by the wall clock, and Close stops it.
func TestSweeper(t *testing.T) {
	ctx := context.Background()
	s, clock, now := clockedStore(t, time.Millisecond)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.CreateUser(ctx, store.User{ID: "u", Username: "alice"}))
	for _, id := range []string{"short", "long"} {
		d := time.Hour
		if id == "long" {
			d = 48 * time.Hour
		}
		_, err := s.CreateSession(ctx, store.NewSession{Session: store.Session{ID: id, UserID: "u", ClientID: "web",
			CreatedAt: now, ExpiresAt: now.Add(d)}})
		must(err)
	}
	clock.Set(now.Add(time.Hour + store.TombstoneGrace))
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.sessions["u"])
		s.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sweeper left %d records", n)
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := s.Session(ctx, "u", "long"); err != nil {
		t.Fatalf("a live session was swept: %v", err)
	}
	clock.Set(now.Add(48*time.Hour + store.TombstoneGrace))
	for {
		s.mu.Lock()
		_, ok := s.sessions["u"]
		s.mu.Unlock()
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sweeper left the user's session map")
		}
		time.Sleep(time.Millisecond)
	}
	must(s.Close())
	select {
	case <-s.done:
	default:
		t.Fatal("Close did not stop the sweeper")
	}
}

// TestClosed: every method fails after Close.
func TestClosed(t *testing.T) {
	s := New()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	calls := map[string]func() error{
		"CreateUser":      func() error { return s.CreateUser(ctx, store.User{ID: "u"}) },
		"User":            func() error { _, err := s.User(ctx, "u"); return err },
		"UserByName":      func() error { _, err := s.UserByName(ctx, "u"); return err },
		"ListUsers":       func() error { _, err := s.ListUsers(ctx); return err },
		"UpdateUser":      func() error { return s.UpdateUser(ctx, store.User{ID: "u"}) },
		"SetUserDisabled": func() error { return s.SetUserDisabled(ctx, "u", true, now) },
		"DeleteUser":      func() error { return s.DeleteUser(ctx, "u") },
		"CreateClient":    func() error { return s.CreateClient(ctx, store.Client{ID: "c"}) },
		"Client":          func() error { _, err := s.Client(ctx, "c"); return err },
		"ListClients":     func() error { _, err := s.ListClients(ctx); return err },
		"DeleteClient":    func() error { return s.DeleteClient(ctx, "c") },
		"CreateSession": func() error {
			_, err := s.CreateSession(ctx, store.NewSession{Session: store.Session{ID: "s", UserID: "u"}})
			return err
		},
		"Rotate": func() error {
			_, err := s.Rotate(ctx, store.Rotation{Presentation: store.Presentation{UserID: "u", SessionID: "s"}})
			return err
		},
		"Logout": func() error {
			_, err := s.Logout(ctx, store.Logout{Presentation: store.Presentation{UserID: "u", SessionID: "s"}})
			return err
		},
		"UseProof": func() error {
			return s.UseProof(ctx, store.Proof{ID: "p", Expiry: time.Now().Add(time.Minute)}, store.RequestID{1})
		},
		"Session":            func() error { _, err := s.Session(ctx, "u", "s"); return err },
		"ListSessions":       func() error { _, err := s.ListSessions(ctx, "u", now); return err },
		"RevokeSession":      func() error { return s.RevokeSession(ctx, "u", "s", "", now) },
		"RevokeUserSessions": func() error { return s.RevokeUserSessions(ctx, "u", "", "", now) },
		"Ping":               func() error { return s.Ping(ctx) },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, errClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
}

// TestRotateDeletedUser covers a state the API cannot reach: a session
// whose user record is gone.
func TestRotateDeletedUser(t *testing.T) {
	ctx := context.Background()
	s := New()
	defer s.Close()
	now := time.Now()
	if err := s.CreateUser(ctx, store.User{ID: "u", Username: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSession(ctx, store.NewSession{Session: store.Session{ID: "s", UserID: "u", ClientID: "web",
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	delete(s.users, "u")
	s.mu.Unlock()
	_, err := s.Rotate(ctx, store.Rotation{Presentation: store.Presentation{UserID: "u", SessionID: "s", ClientID: "web", Now: now}})
	if !errors.Is(err, store.ErrUserInactive) {
		t.Fatalf("Rotate: %v", err)
	}
	if x, _ := s.Session(ctx, "u", "s"); x.RevokeReason != store.ReasonUserDeleted {
		t.Fatalf("session: %+v", x)
	}
}

// TestProofBound: the replay ids held are bounded by MaxProofs; at the
// bound the expired ones make room, and with none expired a new proof is
// refused with an error — never accepted unchecked, never taken for a
// replay.
func TestProofBound(t *testing.T) {
	ctx := context.Background()
	s, clock, now := clockedStore(t, time.Hour)
	proof := func(i int, ttl time.Duration) store.Proof {
		return store.Proof{JKT: "k", ID: fmt.Sprint("p", i), Expiry: now.Add(ttl)}
	}
	for i := range MaxProofs {
		ttl := time.Hour
		if i%2 == 0 {
			ttl = time.Minute
		}
		if err := s.UseProof(ctx, proof(i, ttl), store.RequestID{1}); err != nil {
			t.Fatalf("proof %d: %v", i, err)
		}
	}
	err := s.UseProof(ctx, proof(-1, time.Hour), store.RequestID{1})
	if err == nil || errors.Is(err, store.ErrProofReplayed) {
		t.Fatalf("a proof beyond the bound: %v", err)
	}
	if err := s.UseProof(ctx, proof(1, time.Hour), store.RequestID{2}); !errors.Is(err, store.ErrProofReplayed) {
		t.Fatalf("a recorded proof at the bound: %v", err)
	}
	clock.Advance(2 * time.Minute) // half of them expire
	if err := s.UseProof(ctx, proof(-1, time.Hour), store.RequestID{1}); err != nil {
		t.Fatalf("a proof after half the others expired: %v", err)
	}
	if n := len(s.proofs); n != MaxProofs/2+1 {
		t.Fatalf("%d replay ids held, want %d", n, MaxProofs/2+1)
	}
}
