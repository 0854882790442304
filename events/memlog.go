package events

import (
	"context"
	"sync"
	"time"
)

// MemoryLog is the in-process Log of the embedded store: one process, so
// it is exactly as good as the process's memory.
type MemoryLog struct {
	retention time.Duration
	max       int
	now       func() time.Time

	mu      sync.Mutex
	events  []Event // oldest first
	seq     uint64
	lastMS  int64
	cut     ID
	changed chan struct{} // closed and replaced on every append
}

// NewMemoryLog returns a log that keeps events for retention and at most
// max of them (max ≤ 0: DefaultMaxLen). now is the clock (nil: time.Now).
func NewMemoryLog(retention time.Duration, max int, now func() time.Time) *MemoryLog {
	if max <= 0 {
		max = DefaultMaxLen
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryLog{retention: retention, max: max, now: now, changed: make(chan struct{})}
}

// Retention is how long events are kept.
func (l *MemoryLog) Retention() time.Duration { return l.retention }

// Append adds e.
func (l *MemoryLog) Append(_ context.Context, e Event) (ID, error) {
	if err := e.Valid(); err != nil {
		return ID{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.now().UnixMilli()
	if m < l.lastMS {
		m = l.lastMS
	}
	l.lastMS = m
	l.seq++
	e.ID = ID{MS: m, Seq: l.seq}
	l.events = append(l.events, e)
	// Trim by age (the retention), then by size; only the second is a cut.
	horizon := m - l.retention.Milliseconds()
	i := 0
	for i < len(l.events)-1 && l.events[i].ID.MS < horizon {
		i++
	}
	if over := len(l.events) - i - l.max; over > 0 {
		i += over
		l.cut = l.events[i].ID
	}
	if i > 0 {
		l.events = append(l.events[:0:0], l.events[i:]...)
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return e.ID, nil
}

// Read returns up to n events after `after`.
func (l *MemoryLog) Read(ctx context.Context, after ID, n int, wait time.Duration) ([]Event, error) {
	var timer <-chan time.Time
	for {
		l.mu.Lock()
		var out []Event
		for _, e := range l.events {
			if after.Less(e.ID) {
				out = append(out, e)
				if len(out) == n {
					break
				}
			}
		}
		changed := l.changed
		l.mu.Unlock()
		if len(out) > 0 || wait <= 0 {
			return out, nil
		}
		if timer == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-changed:
		case <-timer:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// State describes the log.
func (l *MemoryLog) State(context.Context) (State, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := State{Seq: l.seq, Cut: l.cut, LastMS: l.lastMS}
	if len(l.events) > 0 {
		st.First, st.Last = l.events[0].ID, l.events[len(l.events)-1].ID
	}
	return st, nil
}
