package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	oautherrors "github.com/go-oauth2/oauth2/v4/errors"

	"github.com/tokend/tokend/events"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/verify"
)

// EventsScope is the scope a client needs to read GET /events: in its
// registered scopes for HTTP Basic, or granted to its client_credentials
// access token for Bearer.
const EventsScope = "events:read"

// DefaultEventsHeartbeat is how often an idle GET /events stream says it
// is up to date.
const DefaultEventsHeartbeat = 5 * time.Second

// DefaultEventsMaxStreams is how many GET /events streams one client may
// hold open on one replica at once (EVENTS_MAX_STREAMS_PER_CLIENT).
const DefaultEventsMaxStreams = 64

// eventsPage is how many events one write of a stream carries at most.
const eventsPage = 256

// errTooManyStreams is the error code of a GET /events refused because
// the client has DefaultEventsMaxStreams (or the configured number) open.
var errTooManyStreams = errors.New("too_many_streams")

// handleEvents serves the revocation feed as Server-Sent Events
// (docs/design.md, "Revocation events"): every event after Last-Event-ID
// (none: everything retained), then new ones as they are appended on any
// replica, with a heartbeat event while idle and the log is reachable.
// A Last-Event-ID from before the retained history, or one the log did
// not hand out where it says (events.Misplaced), gets a "gap" event
// first. The stream ends when the server shuts down, the log cannot be
// read, the reader's Bearer token expires, or the reader is no longer
// allowed to read (checked again whenever an event about its client
// passes and at every heartbeat: feedReader); the consumer reconnects
// with Last-Event-ID, to any replica.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if s.o.Events == nil {
		writeNotFound(w, r)
		return
	}
	ctx := r.Context()
	reader, err := s.authorizeEvents(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	after, err := events.ParseID(r.Header.Get("Last-Event-ID"))
	if err != nil {
		writeError(w, r, invalidRequest("Last-Event-ID is not an event id of this feed"))
		return
	}
	release, ok := s.streams.acquire(reader.clientID, s.o.EventsMaxStreams)
	if !ok {
		e := newError(errTooManyStreams, "this client has "+strconv.Itoa(s.o.EventsMaxStreams)+
			" revocation-feed streams open on this replica, the most allowed (EVENTS_MAX_STREAMS_PER_CLIENT); a consumer needs one")
		e.status = http.StatusTooManyRequests
		e.header = http.Header{"Retry-After": {strconv.Itoa(int(s.o.EventsHeartbeat.Seconds()) + 1)}}
		writeError(w, r, e)
		return
	}
	defer release()
	log := s.o.Events.Log()
	st, err := log.State(ctx)
	if err != nil {
		writeError(w, r, storeErr(ctx, err))
		return
	}
	gap := events.Gap(after, st, s.o.Now(), log.Retention())
	if !gap && !after.IsZero() {
		next, err := log.Read(ctx, after, 1, 0)
		if err != nil {
			writeError(w, r, storeErr(ctx, err))
			return
		}
		var first *events.ID
		if len(next) > 0 {
			first = &next[0].ID
		}
		gap = events.Misplaced(after, first, st)
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
	if gap {
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
	var expired <-chan time.Time // a Bearer reader's token runs out
	if reader.token != nil {
		t := time.NewTimer(reader.token.ExpiresAt.Sub(s.o.Now()))
		defer t.Stop()
		expired = t.C
	}
	// still reports whether the reader may go on reading; when not, the
	// stream ends and the request's log line says why.
	still := func() bool {
		if err := s.reauthorize(ctx, reader); err != nil {
			info(ctx).errLog = "stream ended: " + err.Error()
			s.metrics.eventStreamsEnded.WithLabelValues("reader_revoked").Inc()
			return false
		}
		return true
	}
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
			recheck := false
			for _, it := range items {
				buf = append(buf, it.Frame...)
				recheck = recheck || reader.concerned(it.Event)
			}
			// The reader's own client changed: check it before it hears
			// any more (this event included).
			if recheck && !still() {
				return
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
			// A heartbeat promises the consumer it has missed nothing up
			// to now: only when the hub reads the log, and only to a
			// reader still allowed to read (should a client event have
			// been lost, the client cache's TTL bounds how long a
			// revoked reader goes on).
			if !still() {
				return
			}
			if s.o.Events.Fresh() && !write(events.HeartbeatFrame(s.o.Now())) {
				return
			}
		case <-expired:
			info(ctx).errLog = "stream ended: the access token expired"
			s.metrics.eventStreamsEnded.WithLabelValues("token_expired").Inc()
			return
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
	}
}

// feedReader is who reads a GET /events stream: the client, and the
// credentials it opened the stream with — the client's secret hash as it
// was then (HTTP Basic), or the claims of its access token (Bearer).
type feedReader struct {
	clientID   string
	secretHash []byte         // HTTP Basic
	token      *verify.Claims // Bearer (shared with the verification cache: read only)
}

// concerned reports whether e is about the reader's client (deleted or
// changed), so its authorization must be checked again.
func (rd feedReader) concerned(e events.Event) bool {
	return (e.Kind == events.KindClient || e.Kind == events.KindClientUpdated) && e.Client == rd.clientID
}

// allowed is THE rule of who reads the feed, applied when a stream opens
// and again while it runs: c, the reader's client as it is now, is
// confidential and registered for EventsScope, and the reader's
// credentials still hold — the same secret (a rotation ends the streams
// opened with the old one), or an access token that the client's
// TokensNotBefore does not end (a rotation or a narrowing after it was
// issued) and that was granted EventsScope.
func (rd feedReader) allowed(c store.Client) error {
	switch {
	case c.Public || !slices.Contains(c.Scopes, EventsScope):
		return newError(oautherrors.ErrAccessDenied, "this client may not read the revocation feed (it needs the scope "+EventsScope+")")
	case rd.token == nil && !bytes.Equal(c.SecretHash, rd.secretHash):
		return invalidClient("the client's secret has changed")
	case rd.token != nil && !rd.token.HasScope(EventsScope):
		return newError(oautherrors.ErrAccessDenied, "the access token must be a client_credentials token with the scope "+EventsScope)
	case rd.token != nil && c.TokenEnded(rd.token.IssuedAt):
		return errClientTokenEnded
	}
	return nil
}

// errClientTokenEnded: a client_credentials access token issued before a
// change that ended the client's tokens (store.Client.TokenEnded).
var errClientTokenEnded = func() *oauthError {
	e := invalidClient("the access token was issued before the client's secret or scopes changed")
	e.header = http.Header{"Www-Authenticate": {`Bearer error="invalid_token"`}}
	return e
}()

// authorizeEvents admits a confidential client with EventsScope: by HTTP
// Basic (client_secret_basic) or by a client_credentials access token
// (feedReader.allowed).
func (s *Server) authorizeEvents(r *http.Request) (feedReader, error) {
	auth := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		if auth == "" {
			return feedReader{}, invalidClient("client authentication required (HTTP Basic, or a Bearer client_credentials access token)")
		}
		c, err := s.authenticateClient(r, params{})
		if err != nil {
			return feedReader{}, err
		}
		rd := feedReader{clientID: c.ID, secretHash: c.SecretHash}
		return rd, rd.allowed(c)
	}
	ctx := r.Context()
	cl, why, err := s.checkAccessToken(ctx, strings.TrimSpace(tok))
	if err != nil {
		return feedReader{}, err
	}
	if why != nil {
		if errors.Is(why, errClientTokenEnded) {
			return feedReader{}, errClientTokenEnded
		}
		e := invalidClient("the access token is invalid or expired")
		e.header = http.Header{"Www-Authenticate": {`Bearer error="invalid_token"`}}
		return feedReader{}, e
	}
	if cl.SessionID != "" || cl.Subject != cl.ClientID {
		return feedReader{}, newError(oautherrors.ErrAccessDenied, "the access token must be a client_credentials token with the scope "+EventsScope)
	}
	rd := feedReader{clientID: cl.ClientID, token: cl}
	return rd, s.reauthorize(ctx, rd)
}

// reauthorize applies feedReader.allowed to the reader's client as the
// store has it now. A deleted client is refused; so is every reader when
// the store cannot say (the stream ends and the consumer reconnects).
func (s *Server) reauthorize(ctx context.Context, rd feedReader) error {
	c, err := s.o.Store.Client(ctx, rd.clientID)
	if errors.Is(err, store.ErrNotFound) {
		return invalidClient("unknown client")
	}
	if err != nil {
		return storeErr(ctx, err)
	}
	return rd.allowed(c)
}

// streamCounts counts the open GET /events streams of each client on this
// replica.
type streamCounts struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire takes one of max streams of client; release gives it back.
func (sc *streamCounts) acquire(client string, max int) (release func(), ok bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.n[client] >= max {
		return nil, false
	}
	if sc.n == nil {
		sc.n = map[string]int{}
	}
	sc.n[client]++
	return func() {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		if sc.n[client]--; sc.n[client] == 0 {
			delete(sc.n, client)
		}
	}, true
}
