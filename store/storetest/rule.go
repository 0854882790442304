package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
)

// ruleCase is one presentation of a refresh token, in a state reached
// through the Store API, and what store.Decide's table says must happen.
type ruleCase struct {
	name string
	row  int // the row of store.Decide that decides

	g       uint64                              // rotations before the presentation
	ago     time.Duration                       // since the last rotation (or sign-in)
	expired bool                                // the session expired a minute ago
	prep    func(e *env, s store.Session) error // user or session state, after the rotations
	nbFirst bool                                // log out everywhere just before the sign-in
	missing bool                                // present a session id that does not exist

	off         int64 // p = g + off
	client      string
	scope       string
	window      time.Duration
	sameRequest bool   // the request id of the last rotation (a resent call)
	key         string // the presented token's refresh key id; "" = the session's
	bound       bool   // the sign-in carried a DPoP proof by key A: the session is bound to A
	proof       string // the presentation's proof: "" none, "A" or "B" by that key
	sameProof   bool   // the proof id of the last rotation's proof (key A)

	want    error
	cause   string // of a *ReuseError
	outcome store.Outcome
	gen     int64  // the session's generation after, minus g
	reason  string // revocation reason after; "" = not revoked
}

// at is when a case's state changes happen: after the rotations, before
// the presentation at e.now.
const at = -500 * time.Millisecond

func logoutAll(e *env, s store.Session) error {
	return e.st.RevokeUserSessions(e.ctx, s.UserID, "", store.ReasonLogout, e.now.Add(at))
}

var ruleCases = []ruleCase{
	{name: "no session", row: 1, missing: true, want: store.ErrTokenUnknown},
	{name: "generation beyond MaxGeneration", row: 1, g: 1, off: store.MaxGeneration, ago: time.Second, want: store.ErrTokenUnknown},
	{name: "user disabled", row: 2, g: 1, ago: time.Second, want: store.ErrUserInactive, reason: store.ReasonUserDisable,
		prep: func(e *env, s store.Session) error { return e.st.SetUserDisabled(e.ctx, s.UserID, true, e.now.Add(at)) }},
	{name: "user disabled, used token", row: 2, g: 3, off: -2, ago: time.Second, want: store.ErrUserInactive, reason: store.ReasonUserDisable,
		prep: func(e *env, s store.Session) error { return e.st.SetUserDisabled(e.ctx, s.UserID, true, e.now.Add(at)) }},
	{name: "revoked", row: 3, g: 1, ago: time.Second, want: store.ErrTokenRevoked, reason: store.ReasonRevoked,
		prep: func(e *env, s store.Session) error {
			return e.st.RevokeSession(e.ctx, s.UserID, s.ID, store.ReasonRevoked, e.now.Add(at))
		}},
	{name: "revoked, used token", row: 3, g: 2, off: -2, ago: time.Second, want: store.ErrTokenRevoked, reason: store.ReasonLogout,
		prep: func(e *env, s store.Session) error {
			return e.st.RevokeSession(e.ctx, s.UserID, s.ID, store.ReasonLogout, e.now.Add(at))
		}},
	{name: "ended by log out everywhere (nb)", row: 3, g: 1, ago: time.Second, want: store.ErrTokenRevoked, reason: store.ReasonLogout,
		prep: logoutAll},
	{name: "ended by log out others (nb, nbx another)", row: 3, g: 1, ago: time.Second, want: store.ErrTokenRevoked, reason: store.ReasonLogout,
		prep: func(e *env, s store.Session) error {
			return e.st.RevokeUserSessions(e.ctx, s.UserID, newID(), store.ReasonLogout, e.now.Add(at))
		}},
	{name: "exempt from log out others (nbx)", row: 8, g: 1, ago: time.Second, outcome: store.OutcomeRotated, gen: 1,
		prep: func(e *env, s store.Session) error {
			return e.st.RevokeUserSessions(e.ctx, s.UserID, s.ID, store.ReasonLogout, e.now.Add(at))
		}},
	{name: "signed in after log out everywhere", row: 8, nbFirst: true, ago: time.Second, outcome: store.OutcomeRotated, gen: 1},
	{name: "expired", row: 4, expired: true, want: store.ErrTokenExpired},
	{name: "expired, used token", row: 4, g: 2, off: -2, expired: true, want: store.ErrTokenExpired},
	{name: "client mismatch", row: 5, g: 1, ago: time.Second, client: "evil", want: store.ErrClientMismatch},
	{name: "client mismatch before reuse", row: 5, g: 3, off: -2, ago: time.Hour, client: "evil", want: store.ErrClientMismatch},
	{name: "client mismatch in the window", row: 5, g: 1, off: -1, ago: time.Second, window: 30 * time.Second, client: "evil", want: store.ErrClientMismatch},
	{name: "scope widened", row: 8, g: 1, scope: "openid admin", ago: time.Second, want: store.ErrScopeWidened},
	{name: "scope widened on a retry", row: 10, g: 1, off: -1, scope: "admin", ago: time.Second, window: 30 * time.Second, want: store.ErrScopeWidened},
	{name: "scope widened on a recovery", row: 9, g: 1, off: 1, scope: "admin", ago: time.Second, want: store.ErrScopeWidened},
	{name: "scope widened by a thief: reuse wins", row: 11, g: 3, off: -2, scope: "admin", ago: time.Second,
		want: store.ErrTokenReused, cause: store.CauseChildUsed, reason: store.ReasonReuse},
	{name: "scope narrowed", row: 8, g: 1, scope: "  openid\t", ago: time.Second, outcome: store.OutcomeRotated, gen: 1},
	{name: "current at sign-in", row: 8, outcome: store.OutcomeRotated, gen: 1},
	{name: "current", row: 8, g: 5, ago: time.Hour, window: 30 * time.Second, outcome: store.OutcomeRotated, gen: 1},
	{name: "ahead by 1 (lost rotation)", row: 9, g: 2, off: 1, ago: time.Second, outcome: store.OutcomeRecovered, gen: 2},
	{name: "ahead by 3", row: 9, g: 2, off: 3, ago: time.Second, outcome: store.OutcomeRecovered, gen: 4},
	{name: "ahead of a fresh session", row: 9, off: 1, outcome: store.OutcomeRecovered, gen: 2},
	{name: "retry in the window", row: 10, g: 1, off: -1, ago: 5 * time.Second, window: 30 * time.Second, outcome: store.OutcomeRetried},
	{name: "replay by the same request, W=0", row: 10, g: 4, off: -1, ago: time.Second, sameRequest: true, outcome: store.OutcomeRetried},
	{name: "replay by the same request, window expired", row: 10, g: 1, off: -1, ago: time.Hour, window: 30 * time.Second,
		sameRequest: true, outcome: store.OutcomeRetried},
	{name: "previous, W=0 (strict)", row: 11, g: 1, off: -1, ago: time.Second,
		want: store.ErrTokenReused, cause: store.CauseWindowExpired, reason: store.ReasonReuse},
	{name: "previous, window expired", row: 11, g: 1, off: -1, ago: 31 * time.Second, window: 30 * time.Second,
		want: store.ErrTokenReused, cause: store.CauseWindowExpired, reason: store.ReasonReuse},
	{name: "previous, exactly the window", row: 11, g: 1, off: -1, ago: 30 * time.Second, window: 30 * time.Second,
		want: store.ErrTokenReused, cause: store.CauseWindowExpired, reason: store.ReasonReuse},
	{name: "child used, in the window", row: 11, g: 2, off: -2, ago: time.Second, window: 30 * time.Second,
		want: store.ErrTokenReused, cause: store.CauseChildUsed, reason: store.ReasonReuse},
	{name: "child used, same request as the last rotation", row: 11, g: 2, off: -2, ago: time.Second, sameRequest: true,
		want: store.ErrTokenReused, cause: store.CauseChildUsed, reason: store.ReasonReuse},
	{name: "generation N-40", row: 11, g: 41, off: -40, ago: time.Second, window: 30 * time.Second,
		want: store.ErrTokenReused, cause: store.CauseChildUsed, reason: store.ReasonReuse},
	{name: "sign-in token after two rotations", row: 11, g: 2, off: -2, ago: time.Minute,
		want: store.ErrTokenReused, cause: store.CauseChildUsed, reason: store.ReasonReuse},
	// The refresh key the session started with (row 1): another key's
	// token is no token of the session, whatever its generation.
	{name: "another refresh key", row: 1, g: 1, ago: time.Second, key: "k2", want: store.ErrTokenUnknown},
	{name: "another refresh key, used token", row: 1, g: 3, off: -2, ago: time.Second, key: "k2", want: store.ErrTokenUnknown},
	{name: "another refresh key, token ahead", row: 1, g: 1, off: 1, ago: time.Second, key: "k2", want: store.ErrTokenUnknown},
	// DPoP binding (row 6) and replay (row 7).
	{name: "bound, revoked, no proof", row: 3, bound: true, g: 1, ago: time.Second, want: store.ErrTokenRevoked, reason: store.ReasonRevoked,
		prep: func(e *env, s store.Session) error {
			return e.st.RevokeSession(e.ctx, s.UserID, s.ID, store.ReasonRevoked, e.now.Add(at))
		}},
	{name: "bound, another client, no proof", row: 5, bound: true, g: 1, ago: time.Second, client: "evil", want: store.ErrClientMismatch},
	{name: "bound, no proof", row: 6, bound: true, g: 1, ago: time.Second, want: store.ErrProofRequired},
	{name: "bound, no proof, used token", row: 6, bound: true, g: 3, off: -2, ago: time.Second, want: store.ErrProofRequired},
	{name: "bound, no proof, retry in the window", row: 6, bound: true, g: 1, off: -1, ago: time.Second, window: 30 * time.Second,
		want: store.ErrProofRequired},
	{name: "bound, another key", row: 6, bound: true, g: 1, ago: time.Second, proof: "B", want: store.ErrProofKeyMismatch},
	{name: "bound, another key, used token", row: 6, bound: true, g: 3, off: -2, ago: time.Second, proof: "B", want: store.ErrProofKeyMismatch},
	{name: "bound, proof replayed", row: 7, bound: true, g: 1, ago: time.Second, proof: "A", sameProof: true, want: store.ErrProofReplayed},
	{name: "bound, proof replayed on a retry", row: 7, bound: true, g: 1, off: -1, ago: time.Second, window: 30 * time.Second,
		proof: "A", sameProof: true, want: store.ErrProofReplayed},
	{name: "unbound, proof replayed", row: 7, g: 1, ago: time.Second, proof: "A", sameProof: true, want: store.ErrProofReplayed},
	{name: "unbound, proof replayed with a used token", row: 7, g: 3, off: -2, ago: time.Second, proof: "A", sameProof: true,
		want: store.ErrProofReplayed},
	{name: "bound, resent with its proof (same request)", row: 10, bound: true, g: 1, off: -1, ago: time.Second, proof: "A",
		sameProof: true, sameRequest: true, outcome: store.OutcomeRetried},
	{name: "bound, proof by its key", row: 8, bound: true, g: 1, ago: time.Second, proof: "A", outcome: store.OutcomeRotated, gen: 1},
	{name: "bound at sign-in, proof by its key", row: 8, bound: true, proof: "A", outcome: store.OutcomeRotated, gen: 1},
	{name: "bound, retry in the window with a fresh proof", row: 10, bound: true, g: 1, off: -1, ago: time.Second,
		window: 30 * time.Second, proof: "A", outcome: store.OutcomeRetried},
	{name: "bound, ahead with a proof", row: 9, bound: true, g: 1, off: 1, ago: time.Second, proof: "A", outcome: store.OutcomeRecovered, gen: 2},
	{name: "bound, used token with a proof: reuse", row: 11, bound: true, g: 3, off: -2, ago: time.Second, proof: "A",
		want: store.ErrTokenReused, cause: store.CauseChildUsed, reason: store.ReasonReuse},
	{name: "unbound, proof of any key", row: 8, g: 1, ago: time.Second, proof: "B", outcome: store.OutcomeRotated, gen: 1},
	{name: "bound, proof by its key, scope widened", row: 8, bound: true, g: 1, ago: time.Second, proof: "A", scope: "admin",
		want: store.ErrScopeWidened},
}

// testRotationRule runs every case of the table against the store, once
// through Rotate and once through Logout (local), which classifies a
// presentation exactly as Rotate does but presents no scope: a case that
// Rotate accepts, or refuses only for its scope, ends the session.
func testRotationRule(t *testing.T, e *env) {
	for _, c := range ruleCases {
		t.Run(c.name, func(t *testing.T) {
			runRuleCase(&env{t: t, st: e.st, ctx: e.ctx, now: e.now}, c, false)
		})
		t.Run(c.name+"/logout", func(t *testing.T) {
			runRuleCase(&env{t: t, st: e.st, ctx: e.ctx, now: e.now}, c, true)
		})
	}
}

// runRuleCase reaches the case's state through the Store API, presents
// the token once (to Rotate, or to Logout) and checks the answer and that
// nothing but the rule's writes changed the session.
func runRuleCase(e *env, c ruleCase, logout bool) {
	t := e.t
	u := e.user("rule-" + newID())
	last := e.now.Add(-c.ago)
	created, expires := last.Add(-time.Minute), e.now.Add(24*time.Hour)
	if c.expired {
		created, expires = e.now.Add(-2*time.Hour), e.now.Add(-time.Minute)
		last = created.Add(time.Second)
	}
	if c.nbFirst {
		must(t, e.st.RevokeUserSessions(e.ctx, u.ID, "", store.ReasonLogout, created.Add(-time.Millisecond)))
	}
	s := store.Session{ID: newID(), UserID: u.ID, ClientID: "web", KeyID: refreshKey, Scope: "openid profile",
		CreatedAt: created, UpdatedAt: created, ExpiresAt: expires}
	ns := store.NewSession{Session: s}
	if c.bound {
		ns.Proof = e.proof("A")
		s.JKT = ns.Proof.JKT
	}
	_, err := e.st.CreateSession(e.ctx, ns)
	must(t, err)
	var rq store.RequestID
	var proof *store.Proof
	for gen := range c.g {
		r := e.rotation(s, gen)
		r.Now = last
		if c.bound || c.sameProof {
			r.Proof = e.proof("A")
		}
		if _, err := e.st.Rotate(e.ctx, r); err != nil {
			t.Fatalf("setting up generation %d: %v", gen+1, err)
		}
		rq, proof = r.RequestID, r.Proof
	}
	if c.prep != nil {
		must(t, c.prep(e, s))
	}
	before := e.get(s)
	r := e.rotation(s, uint64(int64(c.g)+c.off))
	if c.missing {
		r.SessionID = newID()
	}
	if c.client != "" {
		r.ClientID = c.client
	}
	r.Scope, r.ReuseWindow = c.scope, c.window
	if c.sameRequest {
		r.RequestID = rq
	}
	if c.key != "" {
		r.KeyID = c.key
	}
	if c.proof != "" {
		r.Proof = e.proof(c.proof)
		if c.sameProof {
			r.Proof.ID = proof.ID
		}
	}
	want, outcome, reason := c.want, c.outcome, c.reason
	if logout {
		if want == nil || errors.Is(want, store.ErrScopeWidened) {
			want, outcome, reason = nil, 0, store.ReasonLogout
		}
		_, err = e.st.Logout(e.ctx, store.Logout{Presentation: r.Presentation, Scope: store.LogoutLocal})
	} else {
		var got store.Rotated
		got, err = e.st.Rotate(e.ctx, r)
		if err == nil && want == nil {
			if got.Outcome != c.outcome || got.Session.Generation != uint64(int64(c.g)+c.gen) {
				t.Fatalf("row %d: outcome %v generation %d, want %v %d", c.row, got.Outcome,
					got.Session.Generation, c.outcome, int64(c.g)+c.gen)
			}
			sameSession(t, e.get(s), got.Session)
		}
	}
	if want != nil {
		if !errors.Is(err, want) {
			t.Fatalf("row %d: got %v, want %v", c.row, err, want)
		}
		var re *store.ReuseError
		if errors.As(err, &re) != (c.cause != "") || re != nil && re.Cause != c.cause {
			t.Fatalf("row %d: got %#v, want cause %q", c.row, err, c.cause)
		}
	} else if err != nil {
		t.Fatalf("row %d: %v", c.row, err)
	}
	if c.missing {
		return
	}
	after := e.get(s)
	if after.RevokeReason != reason || after.RevokedAt.IsZero() != (reason == "") {
		t.Fatalf("row %d: session after: revoked %v (%q), want reason %q", c.row, after.RevokedAt, after.RevokeReason, reason)
	}
	w := before
	w.RevokedAt, w.RevokeReason = after.RevokedAt, after.RevokeReason
	if outcome == store.OutcomeRotated || outcome == store.OutcomeRecovered {
		w.Generation, w.UpdatedAt, w.LastRequest = uint64(int64(c.g)+c.gen), e.now, r.RequestID
	}
	sameSession(t, after, w) // nothing else written
}
