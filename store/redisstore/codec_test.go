package redisstore

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
)

func TestUnpack(t *testing.T) {
	in := "\x05\xff\xa3abc\xc0\xc3\xc2\xd9\x03abc\xda\x00\x03abc\xdb\x00\x00\x00\x03abc\xc4\x01x\xc5\x00\x01y\xc6\x00\x00\x00\x01z" +
		"\xcc\xff\xcd\x01\x00\xce\x00\x01\x00\x00\xcf\x00\x00\x01\x8b\xcf\xe5\x68\x00" +
		"\xd0\xff\xd1\xff\xfe\xd2\xff\xff\xff\xfd\xd3\xff\xff\xff\xff\xff\xff\xff\xfc" +
		"\xca\x3f\xc0\x00\x00\xcb\x40\x04\x00\x00\x00\x00\x00\x00"
	want := []any{int64(5), int64(-1), "abc", nil, true, false, "abc", "abc", "abc", "x", "y", "z",
		int64(255), int64(256), int64(65536), int64(1700000000000),
		int64(-1), int64(-2), int64(-3), int64(-4), 1.5, 2.5}
	got, err := unpack(in)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("unpack:\n got  %#v\n want %#v", got, want)
	}
	for _, bad := range []string{"\xa3ab", "\xd9", "\xd9\x05ab", "\xda\x00", "\xcf\x00", "\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
		"\xc1", "\xd0", "\xca\x00", "\xcb\x00"} {
		if _, err := unpack(bad); !errors.Is(err, errRecord) {
			t.Errorf("unpack(%q): %v, want errRecord", bad, err)
		}
	}
	if str(1.5) != "" || str(int64(7)) != "7" || num("12") != 12 || num(2.0) != 2 || num(nil) != 0 {
		t.Error("str/num conversions")
	}
	if !msTime(int64(0)).IsZero() || !msTime(int64(1000)).Equal(time.Unix(1, 0)) {
		t.Error("msTime")
	}
	if _, err := decodeSession("u", "s", "\x01\x02"); !errors.Is(err, errRecord) {
		t.Errorf("decodeSession of a short record: %v", err)
	}
	if _, err := decodeUser("\xc1"); !errors.Is(err, errRecord) {
		t.Errorf("decodeUser of garbage: %v", err)
	}
}

// TestCorruptRecords: a record that does not decode is a store error,
// never a sentinel.
func TestCorruptRecords(t *testing.T) {
	f := newFixture(t, Options{})
	f.rdb.Set(f.ctx, f.s.userKey(f.u.ID), "\xc1", 0)
	f.rdb.Set(f.ctx, f.s.sessionKey(f.u.ID, f.ses.ID), "\x01", 0)
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
