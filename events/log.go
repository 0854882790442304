package events

import (
	"context"
	"time"
)

// Log is the ordered log of events that every replica reads. Appends are
// atomic and numbered without holes; the oldest events are dropped once
// they are older than the retention (they no longer matter), and, should
// the log outgrow its cap, earlier: State reports that, and Gap turns it
// into the answer a consumer gets.
type Log interface {
	// Append adds e (its ID is ignored) and returns the ID it got.
	Append(ctx context.Context, e Event) (ID, error)
	// Read returns up to n events after `after`, oldest first. When there
	// are none it waits up to wait for one (0: it does not wait).
	Read(ctx context.Context, after ID, n int, wait time.Duration) ([]Event, error)
	// State describes what the log holds now.
	State(ctx context.Context) (State, error)
	// Retention is how long events are kept.
	Retention() time.Duration
}

// State is what a Log holds.
type State struct {
	First, Last ID     // the oldest and newest events retained; zero when empty
	Seq         uint64 // the number of the last event ever appended
	LastMS      int64  // the time part of the id of the last event ever appended
	// Cut is the first event retained after the log last dropped events
	// before their time because of its size cap; zero if it never did.
	Cut ID
}

// Gap reports whether a consumer that has seen every event up to `after`
// (the zero ID: none) may have missed one that still matters at now, for a
// log whose retention is retention:
//   - the log's numbering is behind `after`: the log was lost (Redis
//     flushed or replaced) and started again;
//   - the size cap dropped events after `after` that were younger than the
//     retention.
//
// Events dropped because they were older than the retention never count:
// the access tokens they covered have expired.
func Gap(after ID, st State, now time.Time, retention time.Duration) bool {
	if after.Seq > st.Seq {
		return true
	}
	horizon := now.Add(-retention).UnixMilli()
	return !st.Cut.IsZero() && after.Seq+1 < st.Cut.Seq && st.Cut.MS > horizon
}

// Misplaced reports whether `after` is not where the log put that id:
// resuming with the events whose ids follow it would skip some that
// follow it in number. Ids the log handed out are never misplaced; a
// forged or corrupted Last-Event-ID can be — a far-future time with a
// sequence number in range sorts after every later event, which would
// then never be sent. next is the first retained event whose id follows
// `after` (nil if none): it must be the first retained one numbered
// after after.Seq. A consumer misplaced is told of a gap, like one whose
// events were dropped (Gap), and gets everything retained.
func Misplaced(after ID, next *ID, st State) bool {
	switch {
	case after.IsZero():
		return false
	case after.MS > st.LastMS: // later than every event: the next ones would sort before it
		return true
	case next == nil:
		return after.Seq < st.Last.Seq // the retained events numbered after it sort before it
	}
	return next.Seq != max(after.Seq+1, st.First.Seq)
}

// RetentionMargin is added to the access-token lifetime to make a log's
// retention: it covers a verifier's leeway on exp (verify's default is
// 30 s) and clock skew between tokend and resource servers.
const RetentionMargin = 2 * time.Minute

// Retention is the retention of a log for access tokens living accessTTL.
func Retention(accessTTL time.Duration) time.Duration { return accessTTL + RetentionMargin }
