package keys

import (
	"fmt"
	"time"
)

// Timing says how the keys of a directory move through their states (see
// Schedule). Every replica must use the same Timing, or they disagree on
// which key signs.
type Timing struct {
	// PrePublish is how long a new key is published before it signs: at
	// least the JWKS Cache-Control max-age plus the key directory's reload
	// interval, so that every resource server has it before the first
	// token it signs. The first key of a directory signs at once.
	PrePublish time.Duration
	// RetireAfter is how long a replaced key stays published after it
	// stopped signing: the access-token lifetime plus the verifiers'
	// clock leeway, so every token it signed has expired when it goes.
	RetireAfter time.Duration
}

// State is where a key is in its life.
type State int

// Key states, in life order. StatePublicOnly is a key without a private
// part (a PKIX "PUBLIC KEY" file): published for as long as its file is
// there, never signing.
const (
	StatePending    State = iota + 1 // published, not signing yet
	StateActive                      // published and signing new tokens
	StateRetired                     // published so tokens it signed still verify; no longer signing
	StateExpired                     // no longer published: every token it signed has expired; its file can go
	StatePublicOnly                  // published, cannot sign
)

func (s State) String() string {
	switch s {
	case StatePending:
		return "pending"
	case StateActive:
		return "active"
	case StateRetired:
		return "retired"
	case StateExpired:
		return "expired"
	case StatePublicOnly:
		return "public-only"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Published reports whether a key in state s is in the JWKS.
func (s State) Published() bool { return s != StateExpired }

// Status is a key's state at one instant and the times that bound it.
type Status struct {
	Key   *Key
	State State
	// SignsFrom is when the key starts (or started) signing: its Created
	// time plus Timing.PrePublish, or its Created time for the oldest key.
	// Zero for a public-only key.
	SignsFrom time.Time
	// SignsUntil is when the key stops (or stopped) signing: the SignsFrom
	// of the next newer key. Zero while there is no newer key.
	SignsUntil time.Time
	// DroppedAt is when the key leaves the JWKS: SignsUntil plus
	// Timing.RetireAfter. Zero while SignsUntil is zero.
	DroppedAt time.Time
}

// Schedule returns the status of each of ks at now. ks must be sorted
// oldest first, as loadDir returns them; the result is in the same order.
//
// The states follow from the keys' Created times (their file names), t and
// the clock alone, so every replica that reads the same directory derives
// the same states without talking to the others:
//
//   - keys that can sign (those with a private key) form a chain, oldest
//     first. The oldest signs from the start; every later key signs from
//     Created + t.PrePublish until the next key's start.
//   - at any instant the active key is the newest whose start has passed
//     (the oldest if none has); newer keys are pending, older ones retired
//     until t.RetireAfter after they stopped signing, then expired.
//
// Exactly one key is active whenever ks holds a key with a private key.
func Schedule(ks []*Key, t Timing, now time.Time) []Status {
	out := schedule(len(ks), func(i int) (time.Time, bool) { return ks[i].Created, ks[i].Signer != nil }, t, now)
	for i, k := range ks {
		out[i].Key = k
	}
	return out
}

// schedule computes the states of n keys, oldest first, from each key's
// Created time and whether it can sign (for Schedule and RefreshSchedule).
// The statuses it returns have no Key.
func schedule(n int, key func(i int) (created time.Time, canSign bool), t Timing, now time.Time) []Status {
	out := make([]Status, n)
	chain := make([]int, 0, n) // indexes of keys that can sign
	for i := range n {
		created, canSign := key(i)
		if !canSign {
			out[i].State = StatePublicOnly
			continue
		}
		if len(chain) == 0 {
			out[i].SignsFrom = created
		} else {
			out[i].SignsFrom = created.Add(t.PrePublish)
		}
		chain = append(chain, i)
	}
	active := -1 // position in chain
	for j, i := range chain {
		if j == 0 || !now.Before(out[i].SignsFrom) {
			active = j
		}
	}
	for j, i := range chain {
		st := &out[i]
		if j+1 < len(chain) {
			st.SignsUntil = out[chain[j+1]].SignsFrom
			st.DroppedAt = st.SignsUntil.Add(t.RetireAfter)
		}
		switch {
		case j == active:
			st.State = StateActive
		case j > active:
			st.State = StatePending
		case now.Before(st.DroppedAt):
			st.State = StateRetired
		default:
			st.State = StateExpired
		}
	}
	return out
}

// nextChange returns the earliest instant after now at which a status
// changes (a pending key starts signing, or a retired key is dropped), or
// the zero time if none will.
func nextChange(sts []Status, now time.Time) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if !t.IsZero() && t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, st := range sts {
		switch st.State {
		case StatePending:
			consider(st.SignsFrom)
		case StateRetired:
			consider(st.DroppedAt)
		}
	}
	return next
}

// setOf builds the Set that sts describe: the active key signs; pending,
// active, retired and public-only keys are published, newest first after
// the signing key.
func setOf(sts []Status) (*Set, error) {
	var signing *Key
	published := make([]*Key, 0, len(sts))
	for i := len(sts) - 1; i >= 0; i-- {
		st := sts[i]
		if st.State == StateActive {
			signing = st.Key
		}
		if st.State.Published() {
			published = append(published, st.Key)
		}
	}
	if signing == nil {
		return nil, fmt.Errorf("keys: no key with a private key to sign with")
	}
	return NewSet(signing, published...)
}
