package keys

import (
	"fmt"
	"time"
)

// State is where a key is in its life.
type State int

// Key states, in life order. StatePublicOnly is a signing key without a
// private part (a PKIX "PUBLIC KEY" file): published for as long as its
// file is there, never signing. For a refresh key, "published" means
// "verifies refresh tokens" and "signs" means "is used for new sessions".
const (
	StatePending    State = iota + 1 // published, not signing yet
	StateActive                      // published and signing new tokens
	StateRetired                     // published so what it signed still verifies; no longer signing
	StateExpired                     // no longer published: everything it signed has expired; its file can go
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

// Published reports whether a key in state s is in the JWKS (a refresh
// key: verifies).
func (s State) Published() bool { return s != StateExpired }

// Status is a key's state at one instant and the times that bound it.
type Status[K any] struct {
	Key   K
	State State
	// SignsFrom is when the key starts (or started) signing: its Created
	// time plus Timing.PrePublish, or its Created time for the oldest key.
	// Zero for a public-only key.
	SignsFrom time.Time
	// SignsUntil is when the key stops (or stopped) signing: the SignsFrom
	// of the next newer key. Zero while there is no newer key.
	SignsUntil time.Time
	// DroppedAt is when the key leaves the JWKS, or stops verifying
	// refresh tokens: SignsUntil plus Timing.RetireAfter. Zero while
	// SignsUntil is zero.
	DroppedAt time.Time
}

// Schedule returns the status of each of ks at now. ks must be sorted
// oldest first, as the loaders return them; the result is in the same
// order.
//
// The states follow from the keys' Created times (their file names), t and
// the clock alone, so every replica that reads the same directory derives
// the same states without talking to the others:
//
//   - keys that can sign (every refresh key; signing keys with a private
//     part) form a chain, oldest first. The oldest signs from the start;
//     every later key signs from Created + t.PrePublish until the next
//     key's start.
//   - at any instant the active key is the newest whose start has passed
//     (the oldest if none has); newer keys are pending, older ones retired
//     until t.RetireAfter after they stopped signing, then expired.
//
// Exactly one key is active whenever ks holds a key that can sign.
func Schedule[K KeyType](ks []K, t Timing, now time.Time) []Status[K] {
	out := make([]Status[K], len(ks))
	chain := make([]int, 0, len(ks)) // indexes of keys that can sign
	for i, k := range ks {
		out[i].Key = k
		if !k.canSign() {
			out[i].State = StatePublicOnly
			continue
		}
		created := k.stamp().Created
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
func nextChange[K any](sts []Status[K], now time.Time) time.Time {
	var next time.Time
	for _, st := range sts {
		var t time.Time
		switch st.State {
		case StatePending:
			t = st.SignsFrom
		case StateRetired:
			t = st.DroppedAt
		}
		next = earliest(next, t, now)
	}
	return next
}

// earliest returns the earlier of a and b that is after now, or the zero
// time if neither is.
func earliest(a, b, now time.Time) time.Time {
	if b.IsZero() || !b.After(now) {
		return a
	}
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// setOf builds the set that sts describe: the active key is current;
// pending, active, retired and public-only keys are kept (published,
// usable), newest first after the current one. Pending keys are kept so
// that a replica whose clock runs ahead, and uses a key first, is
// understood by the others. The zero S (nil) when no key is active.
func (kd Kind[K, S]) setOf(sts []Status[K]) (S, error) {
	var current, none K
	kept := make([]K, 0, len(sts))
	for i := len(sts) - 1; i >= 0; i-- {
		st := sts[i]
		if st.State == StateActive {
			current = st.Key
		}
		if st.State.Published() {
			kept = append(kept, st.Key)
		}
	}
	if current == none {
		var zero S
		return zero, nil
	}
	return kd.set(current, kept...)
}
