package redisstore

import (
	"errors"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
)

func TestDecodeErrors(t *testing.T) {
	if str(1.5) != "" || str(int64(7)) != "7" || num("12") != 12 || num(2.0) != 2 || num(nil) != 0 {
		t.Error("str/num conversions")
	}
	if !msTime(int64(0)).IsZero() || !msTime(int64(1000)).Equal(time.Unix(1, 0)) {
		t.Error("msTime")
	}
	if _, err := decodeSession("u", "s", "\x02\x02"); !errors.Is(err, errRecord) {
		t.Errorf("decodeSession of a short record: %v", err)
	}
	if _, err := decodeUser("\x03\x00"); !errors.Is(err, errRecord) {
		t.Errorf("decodeUser of a short record: %v", err)
	}
	if _, err := decodeUser("\x97\xa2id"); !errors.Is(err, errOldUser) {
		t.Errorf("decodeUser of a MessagePack record: %v", err)
	}
}

// TestCorruptRecords: a record that does not decode is a store error,
// never a sentinel.
func TestCorruptRecords(t *testing.T) {
	f := newFixture(t, Options{})
	f.rdb.Set(f.ctx, f.s.userKey(f.u.ID), "\xc1", 0)
	f.rdb.HSet(f.ctx, f.s.sessionsKey(f.u.ID), f.ses.ID, "\x03")
	checks := map[string]error{}
	_, checks["User"] = f.s.User(f.ctx, f.u.ID)
	_, checks["UserByName"] = f.s.UserByName(f.ctx, f.u.Username)
	_, checks["ListUsers"] = f.s.ListUsers(f.ctx)
	_, checks["Session"] = f.s.Session(f.ctx, f.u.ID, f.ses.ID)
	_, checks["Rotate"] = f.s.Rotate(f.ctx, f.rotation(0))
	_, checks["ListSessions"] = f.s.ListSessions(f.ctx, f.u.ID, f.now)
	for name, err := range checks {
		if err == nil {
			t.Errorf("%s of a corrupt record succeeded", name)
		}
		for _, se := range []error{store.ErrNotFound, store.ErrTokenUnknown} {
			if errors.Is(err, se) {
				t.Errorf("%s of a corrupt record: %v", name, err)
			}
		}
	}
}

// BenchmarkDecodeUserAgent is what reading a session's user agent costs
// (every Rotate and Session returns it).
func BenchmarkDecodeUserAgent(b *testing.B) {
	v := encodeUA("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeUA(v); err != nil {
			b.Fatal(err)
		}
	}
}
