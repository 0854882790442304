package redisstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/internal/fields"
)

// FuzzRule checks the Lua rotation rule (the rotate and logout scripts)
// against store.Decide, the one specification of it, on generated
// states: arbitrary session and user records (or none), written straight
// into Redis, and an arbitrary presentation. For each input it runs
// Rotate and Logout (local, global and others) on a copy of the state and
// requires the answer and every write — the session record, the user
// record — to be what Decide's verdict says. The committed seed corpus
// (testdata/fuzz/FuzzRule) runs with every go test; to search further:
//
//	go test -run '^$' -fuzz FuzzRule -fuzztime 5m ./store/redisstore/
func FuzzRule(f *testing.F) {
	s := newStore(f)
	for _, seed := range ruleSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newRuleCase(data)
		for _, op := range []string{"rotate", "local", "global", "others"} {
			checkRuleCase(t, s, c, op)
		}
	})
}

// ruleSeeds crosses the choices at the rule's edges: every presented
// generation against the reuse window's edge (last use one millisecond
// either side of now − window), each state of the session and user
// records, the expiry's edge and the nb edges — so the committed seeds
// alone reach every row.
func ruleSeeds() [][]byte {
	seed := func(set map[int]byte) []byte {
		b := make([]byte, inChoices, inChoices+24)
		for i, v := range set {
			b[i] = v
		}
		return append(b, "material of the strings"...)
	}
	var out [][]byte
	for _, flags := range []byte{0, 1, 2, 4, 8, 16, 32, 2 | 16, 16 | 32, 4 | 32} {
		for presented := range byte(9) {
			for lastUsed := range byte(3) {
				for window := range byte(2) {
					out = append(out, seed(map[int]byte{inFlags: flags, inGeneration: 1, inPresented: presented,
						inLastUsed: lastUsed, inWindow: window, inExpires: 6, inCreated: 3}))
				}
			}
		}
	}
	for expires := range byte(3) {
		for nb := range byte(3) {
			for exempt := range byte(3) {
				for reason := range byte(3) {
					out = append(out, seed(map[int]byte{inFlags: 32, inExpires: expires, inNotBefore: nb, inExempt: exempt,
						inEndReason: reason, inPresented: 3, inCreated: 3}))
				}
			}
		}
	}
	for client := range byte(3) {
		for presenter := range byte(3) {
			for presented := range byte(5) {
				out = append(out, seed(map[int]byte{inClient: client, inPresenter: presenter, inPresented: presented,
					inGeneration: 2, inExpires: 6, inWindow: 1}))
			}
		}
	}
	for key := range byte(4) {
		for bound := range byte(2) {
			for proof := range byte(3) {
				for rec := range byte(4) {
					for presented := range byte(5) {
						out = append(out, seed(map[int]byte{inKey: key, inBound: bound, inProof: proof, inRecorded: rec,
							inPresented: presented, inGeneration: 2, inExpires: 6, inWindow: 1, inRequest: 1, inRequested: 3 * (presented % 2)}))
					}
				}
			}
		}
	}
	for bound := range byte(2) {
		for rec := range byte(4) {
			for req := range byte(3) {
				out = append(out, seed(map[int]byte{inBound: bound, inProof: 1, inRecorded: rec, inRequest: req,
					inGeneration: 2, inPresented: 2, inExpires: 6, inWindow: 1, inFlags: 4}))
			}
		}
	}
	for requested := range byte(6) {
		for presented := range byte(5) {
			out = append(out, seed(map[int]byte{inGeneration: 2, inPresented: presented, inRequested: requested, inExpires: 6,
				inWindow: 1, inRequest: 1}))
		}
	}
	return out
}

// ruleInput is one generated state and presentation.
type ruleInput struct {
	s        *store.Session   // nil: no session record
	u        *store.User      // nil: no user record
	r        store.Rotation   // Scope only for Rotate
	recorded *store.RequestID // the request that recorded r.Proof.ID, or nil
}

// The input's first bytes are choices, one byte each, in this order;
// the bytes after them are the material of arbitrary strings. Each
// choice picks among the values the rule compares at (equal, one less,
// one more) or an arbitrary one.
const (
	inFlags      = iota // 1 no session, 2 revoked, 4 last request set, 8 no user, 16 disabled, 32 nb set
	inGeneration        // the session's generation
	inPresented         // the presented one, relative to it
	inWindow            // the reuse window
	inLastUsed          // last use, relative to now − window
	inExpires           // expiry, relative to now
	inCreated           // creation, relative to now
	inRevoked           // revocation time, relative to now
	inNotBefore         // the user's nb, relative to the session's creation
	inExempt            // the user's nbx
	inEndReason         // the user's nb reason
	inReason            // the session's revocation reason
	inClient            // the session's client
	inPresenter         // the presenting client
	inGranted           // the granted scope
	inRequested         // the requested scope
	inRequest           // the presentation's request id
	inKey               // the presented key id, against the session's
	inBound             // the session's DPoP key
	inProof             // the presentation's proof: none, by the session's key, by another
	inRecorded          // the proof id: not recorded, by this request, by another, by none
	inChoices
)

// ruleInputs reads a fuzz input.
type ruleInputs struct {
	choice []byte
	rest   []byte
}

func (g *ruleInputs) pick(i, n int) int {
	if i >= len(g.choice) {
		return 0
	}
	return int(g.choice[i]) % n
}

// bytes returns the next n bytes of the material (fewer at its end).
func (g *ruleInputs) bytes(n int) string {
	n = min(n, len(g.rest))
	out := string(g.rest[:n])
	g.rest = g.rest[n:]
	return out
}

// text returns one of known by choice i, or else a string of the
// material.
func (g *ruleInputs) text(i int, known ...string) string {
	if k := g.pick(i, len(known)+1); k < len(known) {
		return known[k]
	}
	n := 0
	if len(g.rest) > 0 {
		n = int(g.rest[0]) % 48
		g.rest = g.rest[1:]
	}
	return g.bytes(n)
}

// offset returns a time offset by choice i: the edges 0 and ±1 ms, a few
// larger ones, or an arbitrary one from the material.
func (g *ruleInputs) offset(i int) time.Duration {
	edges := []time.Duration{0, -time.Millisecond, time.Millisecond, -time.Hour, time.Hour, -30 * time.Second, 24 * time.Hour}
	if k := g.pick(i, len(edges)+1); k < len(edges) {
		return edges[k]
	}
	b := []byte(g.bytes(4) + "\x00\x00\x00\x00")
	return time.Duration(int32(binary.BigEndian.Uint32(b))) * time.Millisecond
}

// fuzzNow is the generated presentations' time: a month ahead of the
// wall clock, so that no generated record is gone by Redis's clock
// (store/storetest covers records that are).
var fuzzNow = time.Now().Add(30 * 24 * time.Hour).Truncate(time.Millisecond)

func newRuleCase(data []byte) ruleInput {
	g := &ruleInputs{choice: data[:min(len(data), inChoices)], rest: data[min(len(data), inChoices):]}
	flags := g.pick(inFlags, 256)
	now := fuzzNow
	window := []time.Duration{0, 30 * time.Second, time.Millisecond, 5 * time.Minute}[g.pick(inWindow, 4)]
	var c ruleInput
	sid, uid := randomID(), "u"+randomID()
	if flags&1 == 0 {
		gens := []uint64{0, 1, 2, 40, store.MaxGeneration - 1, store.MaxGeneration - 2}
		s := &store.Session{ID: sid, UserID: uid, Generation: gens[g.pick(inGeneration, len(gens))],
			ClientID: g.text(inClient, "web", "", "wéb"), Scope: g.text(inGranted, "openid profile", "", " openid\tprofile  "),
			UserAgent: g.bytes(20), IP: g.bytes(8),
			CreatedAt: now.Add(g.offset(inCreated)), UpdatedAt: now.Add(-window + g.offset(inLastUsed)),
			ExpiresAt: now.Add(g.offset(inExpires))}
		if flags&2 != 0 {
			s.RevokedAt, s.RevokeReason = now.Add(g.offset(inRevoked)), g.text(inReason, store.ReasonLogout, store.ReasonReuse, "")
		}
		if flags&4 != 0 {
			copy(s.LastRequest[:], g.bytes(8)+"\x01")
		}
		s.KeyID = g.text(inKey, "abcdefgh", "")
		s.JKT = g.text(inBound, "", fuzzJKT)
		c.s = s
	}
	if flags&8 == 0 {
		u := &store.User{ID: uid, Username: g.bytes(8), PasswordHash: g.bytes(12), Roles: fields.Words(g.bytes(12)),
			Disabled: flags&16 != 0, CreatedAt: now, UpdatedAt: now}
		if flags&32 != 0 {
			created := now
			if c.s != nil {
				created = c.s.CreatedAt
			}
			u.SessionsEnded = created.Add(g.offset(inNotBefore))
			u.SessionsExempt = g.text(inExempt, "", sid, randomID())
			u.SessionsEndReason = g.text(inEndReason, store.ReasonLogout, store.ReasonUserDisable, "")
		}
		c.u = u
	}
	r := store.Rotation{Presentation: store.Presentation{UserID: uid, SessionID: sid, ClientID: "web", Now: now, ReuseWindow: window}}
	var g0 uint64
	if c.s != nil {
		g0 = c.s.Generation
		r.ClientID = c.s.ClientID
	}
	if k := g.pick(inPresenter, 3); k > 0 {
		r.ClientID = []string{"", "web", "evil"}[k]
	}
	switch k := g.pick(inPresented, 9); k {
	case 7:
		r.Generation = store.MaxGeneration
	case 8:
		r.Generation = uint64(len(g.rest))
	default: // g-3 … g+3
		r.Generation = g0 + uint64(k) - 3
	}
	r.Scope = g.text(inRequested, "", "openid", "profile openid", "openid admin", " \topenid ")
	switch g.pick(inRequest, 3) {
	case 0:
		if c.s != nil {
			r.RequestID = c.s.LastRequest
		}
	case 1:
		copy(r.RequestID[:], g.bytes(8)+"\x02")
	}
	r.KeyID = "abcdefgh"
	if c.s != nil {
		r.KeyID = c.s.KeyID
	}
	if k := g.pick(inKey, 4); k > 1 {
		r.KeyID = []string{"", "abcdefgh", "ijklmnop", ""}[k]
	}
	if k := g.pick(inProof, 4); k > 0 {
		r.Proof = &store.Proof{JKT: fuzzJKT, ID: "proof-" + randomID(), Expiry: time.Now().Add(time.Hour)}
		if k == 2 {
			r.Proof.JKT = "another key's thumbprint"
		}
		if k == 3 {
			r.Proof.JKT = g.bytes(43)
		}
		switch g.pick(inRecorded, 4) {
		case 1:
			c.recorded = &r.RequestID
		case 2:
			c.recorded = &store.RequestID{9}
		case 3:
			c.recorded = &store.RequestID{}
		}
	}
	c.r = r
	return c
}

// fuzzJKT is the thumbprint of the DPoP key of the generated sessions and
// proofs.
const fuzzJKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"

// put writes c's records under fresh ids, so each operation starts from
// the same state. The records are written as the store writes them.
func (c ruleInput) put(t *testing.T, s *Store) ruleInput {
	t.Helper()
	ctx := context.Background()
	oldSID := c.r.SessionID
	c.r.UserID, c.r.SessionID = "u"+randomID(), randomID()
	if c.s != nil {
		x := *c.s
		x.UserID, x.ID = c.r.UserID, c.r.SessionID
		c.s = &x
		rec, err := encodeSession(x)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.rdb.HSet(ctx, s.sessionsKey(x.UserID), x.ID, rec).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if c.u != nil {
		u := *c.u
		u.ID = c.r.UserID
		if u.SessionsExempt == oldSID {
			u.SessionsExempt = c.r.SessionID
		}
		c.u = &u
		err := s.rdb.Eval(ctx, recordsLua+`
putUser(KEYS[1], {ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]),
  tonumber(ARGV[8]), ARGV[9], ARGV[10], tonumber(ARGV[11])})`, []string{s.userKey(u.ID)},
			u.ID, u.Username, u.PasswordHash, strings.Join(u.Roles, " "), flag(u.Disabled),
			fields.Millis(u.CreatedAt), fields.Millis(u.UpdatedAt), fields.Millis(u.SessionsEnded),
			u.SessionsExempt, u.SessionsEndReason, fields.Millis(u.LastSignIn)).Err()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
	}
	if c.r.Proof != nil {
		x := *c.r.Proof
		x.ID = "proof-" + randomID()
		c.r.Proof = &x
		if c.recorded != nil {
			if err := s.rdb.Set(ctx, s.proofKey(c.r.UserID, x.ID), c.recorded[:], time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c
}

// checkRuleCase runs one operation on a fresh copy of c's state and
// compares its answer and writes with what store.Decide says.
func checkRuleCase(t *testing.T, s *Store, c ruleInput, op string) {
	t.Helper()
	ctx := context.Background()
	c = c.put(t, s)
	r := c.r
	if op != "rotate" { // a logout presents no scope
		r.Scope = ""
	}
	v := store.Decide(c.s, c.u, r, c.recorded)
	var ws *store.Session
	var wu *store.User
	ended := v.Revoke != ""
	if c.s != nil {
		x := *c.s
		ws = &x
		if op == "rotate" || ended {
			v.Apply(ws, r)
		}
	}
	if c.u != nil {
		x := *c.u
		wu = &x
	}
	var got any
	var err error
	var want any
	if op == "rotate" {
		var rot store.Rotated
		rot, err = s.Rotate(ctx, r)
		got = rot
		want = store.Rotated{}
		if v.Err == nil {
			want = store.Rotated{Session: *ws, Scope: store.NormalScope(strings.Join(store.ScopeFields(r.Scope), " "), ws.Scope),
				Roles: wu.Roles, Outcome: v.Outcome}
		}
	} else {
		scope := map[string]store.LogoutScope{"local": store.LogoutLocal, "global": store.LogoutGlobal, "others": store.LogoutOthers}[op]
		if v.Err == nil {
			switch scope {
			case store.LogoutLocal:
				ws.RevokedAt, ws.RevokeReason, ended = r.Now, store.ReasonLogout, true
			case store.LogoutGlobal:
				store.EndSessions(wu, "", store.ReasonLogout, r.Now)
			case store.LogoutOthers:
				store.EndSessions(wu, r.SessionID, store.ReasonLogout, r.Now)
			}
		}
		var ses store.Session
		ses, err = s.Logout(ctx, store.Logout{Presentation: r.Presentation, Scope: scope})
		got, want = ses, store.Session{}
		if ws != nil && !errors.Is(v.Err, store.ErrTokenUnknown) {
			want = store.Effective(*ws, wu)
		}
	}
	what := fmt.Sprintf("%s of %s", op, c)
	if ruleError(err) != ruleError(v.Err) {
		t.Fatalf("%s: error %v, Decide says %v", what, err, v.Err)
	}
	if !reflect.DeepEqual(comparable(got), comparable(want)) {
		t.Fatalf("%s: answer\n got  %+v\n want %+v", what, got, want)
	}
	// The writes.
	rs, ru := c.read(t, s)
	if !reflect.DeepEqual(comparable(rs), comparable(ws)) {
		t.Fatalf("%s: session record after\n got  %+v\n want %+v", what, rs, ws)
	}
	if !reflect.DeepEqual(comparable(ru), comparable(wu)) {
		t.Fatalf("%s: user record after\n got  %+v\n want %+v", what, ru, wu)
	}
	if r.Proof != nil {
		key := s.proofKey(r.UserID, r.Proof.ID)
		by, err := s.rdb.Get(ctx, key).Result()
		switch {
		case v.RecordProof:
			at := s.rdb.PExpireTime(ctx, key).Val()
			if err != nil || by != string(r.RequestID[:]) || at != time.Duration(fields.Millis(r.Proof.Expiry))*time.Millisecond {
				t.Fatalf("%s: proof id recorded as %q (%v) until %v, want by %q until %v", what, by, err, at, r.RequestID[:], r.Proof.Expiry)
			}
		case c.recorded == nil && !errors.Is(err, redis.Nil):
			t.Fatalf("%s: proof id recorded as %q (%v), Decide says not to", what, by, err)
		case c.recorded != nil && by != string(c.recorded[:]):
			t.Fatalf("%s: proof id's record changed to %q (%v)", what, by, err)
		}
		s.rdb.Del(ctx, key)
	}
	if err := s.rdb.Del(ctx, s.sessionsKey(r.UserID), s.userKey(r.UserID)).Err(); err != nil {
		t.Fatal(err)
	}
}

// ruleError names a refusal: its sentinel, with the cause of a reuse;
// an error that is none of them is named as itself.
func ruleError(err error) string {
	var re *store.ReuseError
	if errors.As(err, &re) {
		return "reused " + re.Cause
	}
	for _, e := range []error{store.ErrTokenUnknown, store.ErrUserInactive, store.ErrTokenRevoked, store.ErrTokenExpired,
		store.ErrClientMismatch, store.ErrScopeWidened, store.ErrProofRequired, store.ErrProofKeyMismatch, store.ErrProofReplayed} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	if err == nil {
		return "accepted"
	}
	return "other: " + err.Error()
}

// read returns the session and user records of c as they are in Redis.
func (c ruleInput) read(t *testing.T, s *Store) (*store.Session, *store.User) {
	t.Helper()
	ctx := context.Background()
	var ses *store.Session
	if v, err := s.rdb.HGet(ctx, s.sessionsKey(c.r.UserID), c.r.SessionID).Result(); err == nil {
		x, err := decodeSession(c.r.UserID, c.r.SessionID, v)
		if err != nil {
			t.Fatal(err)
		}
		ses = &x
	} else if !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	var u *store.User
	if v, err := s.rdb.Get(ctx, s.userKey(c.r.UserID)).Result(); err == nil {
		x, err := decodeUser(v)
		if err != nil {
			t.Fatal(err)
		}
		u = &x
	} else if !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return ses, u
}

func (c ruleInput) String() string {
	f := func(v any) string {
		if reflect.ValueOf(v).IsNil() {
			return "none"
		}
		return fmt.Sprintf("%+v", comparable(v))
	}
	return fmt.Sprintf("session %s, user %s, presentation %+v, proof recorded by %v", f(c.s), f(c.u), comparable(c.r), c.recorded)
}

// comparable returns v with every time.Time replaced by its unix
// milliseconds (0 for the zero time), every nil slice by an empty one and
// pointers followed, so reflect.DeepEqual compares what a store keeps.
func comparable(v any) any {
	return normal(reflect.ValueOf(v))
}

func normal(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Invalid:
		return nil
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return normal(v.Elem())
	case reflect.Struct:
		if t, ok := v.Interface().(time.Time); ok {
			return fields.Millis(t)
		}
		m := map[string]any{}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				m[v.Type().Field(i).Name] = normal(v.Field(i))
			}
		}
		return m
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return string(v.Bytes())
		}
		out := []any{}
		for i := range v.Len() {
			out = append(out, normal(v.Index(i)))
		}
		return out
	}
	return v.Interface()
}
