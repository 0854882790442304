package events

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Hub follows a Log for one replica — one blocking read at a time, however
// many subscribers — and keeps the most recent events in memory, so that
// a GET /events subscriber that is up to date costs no Redis call at all:
// it waits on Changed and takes the new events from Since.
type Hub struct {
	log    Log
	logger *slog.Logger
	ring   int
	wait   time.Duration
	now    func() time.Time

	issuer string

	mu        sync.Mutex
	events    []Item // the events after base, oldest first, at most ring
	base      ID     // every event after base is in events
	started   bool
	lastOK    time.Time     // the last time a read of the log succeeded
	changed   chan struct{} // closed and replaced when events or lastOK change
	listeners []func(Event)
}

// Item is an event with its Server-Sent Events frame, rendered once per
// replica rather than once per subscriber.
type Item struct {
	Event
	Frame []byte
}

// HubOptions configure a Hub.
type HubOptions struct {
	Issuer string        // the iss of the frames' payloads (JWT_ISSUER)
	Ring   int           // events kept in memory [8192]
	Wait   time.Duration // longest blocking read [1s]; also how often the hub proves the log is reachable
	Logger *slog.Logger
	Now    func() time.Time
}

// NewHub returns a hub on log; Run makes it follow the log.
func NewHub(log Log, o HubOptions) *Hub {
	if o.Ring <= 0 {
		o.Ring = 8192
	}
	if o.Wait <= 0 {
		o.Wait = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Hub{log: log, logger: o.Logger, ring: o.Ring, wait: o.Wait, now: o.Now, issuer: o.Issuer, changed: make(chan struct{})}
}

// Issuer is the iss of the hub's frames.
func (h *Hub) Issuer() string { return h.issuer }

// Log returns the hub's log.
func (h *Hub) Log() Log { return h.log }

// OnEvent registers fn to be called, in order, with every event appended
// after the hub started (the replica's caches use it). Call it before Run;
// fn must not block.
func (h *Hub) OnEvent(fn func(Event)) {
	h.mu.Lock()
	h.listeners = append(h.listeners, fn)
	h.mu.Unlock()
}

// Run follows the log until ctx ends, retrying with backoff while the log
// cannot be read.
func (h *Hub) Run(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if err := h.follow(ctx); err != nil && ctx.Err() == nil {
			h.logger.LogAttrs(ctx, slog.LevelWarn, "revocation feed: cannot read the event log; retrying",
				slog.String("error", err.Error()), slog.Duration("backoff", backoff))
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// follow does one read of the log (starting at its end, the first time).
func (h *Hub) follow(ctx context.Context) error {
	h.mu.Lock()
	started, after := h.started, h.base
	if n := len(h.events); n > 0 {
		after = h.events[n-1].ID
	}
	h.mu.Unlock()
	if !started {
		st, err := h.log.State(ctx)
		if err != nil {
			return err
		}
		h.mu.Lock()
		h.base, h.started = st.Last, true
		h.mu.Unlock()
		after = st.Last
	}
	rctx, cancel := context.WithTimeout(ctx, h.wait+5*time.Second)
	evs, err := h.log.Read(rctx, after, 512, h.wait)
	cancel()
	if err != nil {
		return err
	}
	items := make([]Item, len(evs))
	for i, e := range evs {
		items[i] = Item{Event: e, Frame: Frame(e, h.issuer)}
	}
	// The listeners (the replica's caches) hear of the events before any
	// subscriber does: a subscriber acting on a client event (a stream
	// re-checking its reader) reads the client afresh, not from a cache
	// the event is about to clear.
	h.mu.Lock()
	listeners := h.listeners
	h.mu.Unlock()
	for _, e := range evs {
		for _, fn := range listeners {
			fn(e)
		}
	}
	h.mu.Lock()
	h.lastOK = h.now()
	h.events = append(h.events, items...)
	if over := len(h.events) - h.ring; over > 0 {
		h.base = h.events[over-1].ID
		h.events = append(h.events[:0:0], h.events[over:]...)
	}
	close(h.changed)
	h.changed = make(chan struct{})
	h.mu.Unlock()
	return nil
}

// Since returns up to n events after `after` from memory, and a channel
// closed when there is news. ok is false when the hub does not hold every
// event after `after` (it is too old, or the hub has not started): read
// those from the Log.
func (h *Hub) Since(after ID, n int) (items []Item, ok bool, changed <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.started || after.Less(h.base) {
		return nil, false, h.changed
	}
	i := sort.Search(len(h.events), func(i int) bool { return after.Less(h.events[i].ID) })
	j := min(len(h.events), i+n)
	return h.events[i:j:j], true, h.changed
}

// LastOK is the last time the hub read the log successfully: a subscriber
// that has every event up to Since's last is up to date as of then.
func (h *Hub) LastOK() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastOK
}

// Fresh reports whether the hub read the log successfully recently enough
// for a heartbeat to be honest (within three blocking reads).
func (h *Hub) Fresh() bool {
	t := h.LastOK()
	return !t.IsZero() && h.now().Sub(t) < 3*h.wait+time.Second
}
