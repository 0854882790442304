package server

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	oautherrors "github.com/go-oauth2/oauth2/v4/errors"

	"github.com/tokend/tokend/events"
	"github.com/tokend/tokend/store"
)

// EventsScope is the scope a client needs to read GET /events: in its
// registered scopes for HTTP Basic, or granted to its client_credentials
// access token for Bearer.
const EventsScope = "events:read"

// DefaultEventsHeartbeat is how often an idle GET /events stream says it
// is up to date.
const DefaultEventsHeartbeat = 5 * time.Second

// eventsPage is how many events one write of a stream carries at most.
const eventsPage = 256

// handleEvents serves the revocation feed as Server-Sent Events
// (docs/design.md, "Revocation events"): every event after Last-Event-ID
// (none: everything retained), then new ones as they are appended on any
// replica, with a heartbeat event while idle and the log is reachable.
// A Last-Event-ID from before the retained history gets a "gap" event
// first. The stream ends when the server shuts down or the log cannot be
// read; the consumer reconnects with Last-Event-ID, to any replica.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if s.o.Events == nil {
		http.NotFound(w, r)
		return
	}
	if err := s.authorizeEvents(r); err != nil {
		writeError(w, r, err)
		return
	}
	after, err := events.ParseID(r.Header.Get("Last-Event-ID"))
	if err != nil {
		writeError(w, r, invalidRequest("Last-Event-ID is not an event id of this feed"))
		return
	}
	ctx := r.Context()
	log := s.o.Events.Log()
	st, err := log.State(ctx)
	if err != nil {
		writeError(w, r, storeErr(ctx, err))
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 1000\n\n")) {
		return
	}
	if events.Gap(after, st, s.o.Now(), log.Retention()) {
		s.metrics.eventGaps.Inc()
		if !write(events.GapFrame(st)) {
			return
		}
		after = events.ID{}
	}
	s.metrics.eventStreams.Inc()
	defer s.metrics.eventStreams.Dec()
	tick := time.NewTicker(s.o.EventsHeartbeat)
	defer tick.Stop()
	var buf []byte
	caughtUp := false // a heartbeat went out since the stream started
	for {
		items, ok, changed := s.o.Events.Since(after, eventsPage)
		if !ok {
			// Older than the hub's memory: from the log itself.
			evs, err := log.Read(ctx, after, eventsPage, 0)
			if err != nil {
				info(ctx).errLog = err.Error()
				return
			}
			items = items[:0]
			for _, e := range evs {
				items = append(items, events.Item{Event: e, Frame: events.Frame(e, s.o.Events.Issuer())})
			}
		}
		if len(items) > 0 {
			buf = buf[:0]
			for _, it := range items {
				buf = append(buf, it.Frame...)
			}
			if !write(buf) {
				return
			}
			s.metrics.eventsSent.Add(float64(len(items)))
			after = items[len(items)-1].ID
			continue
		}
		if !caughtUp && s.o.Events.Fresh() {
			// The replay is done: say so at once, so a consumer starting
			// up (or failing closed) need not wait for the first tick.
			caughtUp = true
			if !write(events.HeartbeatFrame(s.o.Now())) {
				return
			}
			continue
		}
		select {
		case <-changed:
		case <-tick.C:
			// Only when the hub reads the log: a heartbeat promises the
			// consumer it has missed nothing up to now.
			if s.o.Events.Fresh() && !write(events.HeartbeatFrame(s.o.Now())) {
				return
			}
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
	}
}

// authorizeEvents admits a confidential client with EventsScope: by HTTP
// Basic (client_secret_basic) or by a client_credentials access token.
func (s *Server) authorizeEvents(r *http.Request) error {
	auth := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		if auth == "" {
			return invalidClient("client authentication required (HTTP Basic, or a Bearer client_credentials access token)")
		}
		c, err := s.authenticateClient(r, params{})
		if err != nil {
			return err
		}
		if c.Public || !slices.Contains(c.Scopes, EventsScope) {
			return newError(oautherrors.ErrAccessDenied, "this client may not read the revocation feed (it needs the scope "+EventsScope+")")
		}
		return nil
	}
	// A client's own token is the only kind accepted, and it has no
	// session: checkAccessToken would check nothing more than
	// verifySignature does. A user's token is refused below, whatever its
	// session; the client's existence is checked last.
	cl, err := s.verifySignature(strings.TrimSpace(tok), s.o.Now())
	if err != nil {
		e := invalidClient("the access token is invalid or expired")
		e.header = http.Header{"Www-Authenticate": {`Bearer error="invalid_token"`}}
		return e
	}
	if cl.SessionID != "" || cl.Subject != cl.ClientID || !cl.HasScope(EventsScope) {
		return newError(oautherrors.ErrAccessDenied, "the access token must be a client_credentials token with the scope "+EventsScope)
	}
	// A deleted client's token no longer reads the feed.
	if _, err := s.o.Store.Client(r.Context(), cl.ClientID); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return invalidClient("unknown client")
		}
		return storeErr(r.Context(), err)
	}
	return nil
}
