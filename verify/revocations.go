package verify

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrRevoked: the token's session was ended (logout, revocation, reuse
// detected, user disabled or deleted, client deleted), or the token is a
// client's own (client_credentials) issued before the client's secret was
// rotated or a scope or grant taken away, and the Verifier heard of it on
// tokend's revocation feed. Errors matching it also match ErrInvalid:
// answer 401 invalid_token.
var ErrRevoked = errors.New("verify: access token revoked")

// Defaults of Revocations.
const (
	DefaultMaxLag            = 30 * time.Second
	DefaultMaxRevocations    = 1_000_000
	DefaultReconnectMinDelay = 100 * time.Millisecond
	DefaultReconnectMaxDelay = 10 * time.Second
	revocationIdleTimeout    = 20 * time.Second // tokend sends a heartbeat every 5 s
	revocationSweepEvery     = 30 * time.Second
	maxRevocationFrameBytes  = 64 << 10
)

// Revocations configures WithRevocations: the Verifier follows tokend's
// revocation feed (GET /events) and refuses the access tokens of ended
// sessions as soon as it hears of them, without calling tokend per
// request.
type Revocations struct {
	// ClientID and ClientSecret are a confidential tokend client allowed
	// to read the feed: created with the scope events:read
	// (`tokend clients create NAME --grants client_credentials --scopes events:read`).
	ClientID, ClientSecret string
	// URL of the feed. Default: revocation_events_endpoint of the
	// issuer's metadata; with WithJWKSURL, the JWKS URL's origin + /events.
	URL string
	// MaxLag is how long the feed may be silent (no event, no heartbeat)
	// before it counts as down [DefaultMaxLag].
	MaxLag time.Duration
	// FailClosed chooses what Verify does while the feed is down (silent
	// longer than MaxLag, or not yet caught up since New): false — the
	// default — keeps accepting tokens, as a Verifier without the feed
	// does (revocations during the outage take effect once it is back);
	// true refuses every token with an error matching ErrUnavailable (503)
	// until the feed has caught up again.
	FailClosed bool
	// MaxEntries bounds the revoked sessions, users and clients kept
	// [DefaultMaxRevocations]. Entries leave when the tokens they cover
	// have expired; beyond the bound the soonest to expire are dropped
	// early (counted in RevocationStats.Dropped).
	MaxEntries int
	// HTTPClient for the feed; it must not have a Timeout (the stream is
	// long-lived). Default: a client on http.DefaultTransport.
	HTTPClient *http.Client
}

// WithRevocations makes the Verifier follow tokend's revocation feed (see
// Revocations). Close stops it.
func WithRevocations(r Revocations) Option {
	return func(o *options) {
		if r.ClientID == "" || r.ClientSecret == "" {
			o.err = errors.New("verify: WithRevocations needs ClientID and ClientSecret")
			return
		}
		o.revocations = &r
	}
}

// RevocationStats describes the feed as a Verifier follows it.
type RevocationStats struct {
	Connected   bool      // a stream is open
	CaughtUp    bool      // the stream has delivered everything up to its last heartbeat
	LastEventID string    // resume point
	LastSeen    time.Time // the last event or heartbeat
	Sessions    int       // revoked sessions kept
	Users       int       // user not-before times kept
	Clients     int       // deleted or changed clients kept
	Events      uint64    // events applied
	Reconnects  uint64    // streams that ended and were reopened
	Gaps        uint64    // times tokend said events may have been missed
	Dropped     uint64    // entries dropped early because of MaxEntries
}

// notBefore refuses the tokens of a user issued in a second before ms's
// (Unix milliseconds; iat is whole seconds, and a session started just
// after ms in the same second must keep working — the sessions ended in
// that second are named in the event), except those of session except;
// or the tokens of a deleted client issued at or before ms; or a changed
// client's own tokens (no sid) issued at or before ms (tokend issues none
// in the second of such a change, so this refuses no later token).
type notBefore struct {
	ms     int64
	except string
	until  int64 // Unix seconds
}

// feedDown is the description of a token refused because the feed is
// down (Revocations.FailClosed).
const feedDown = "the revocation feed is unavailable"

// revocations is the state a Verifier keeps from the feed.
type revocations struct {
	cfg    Revocations
	url    func(context.Context) (string, error) // the feed's URL
	client *http.Client
	log    *slog.Logger
	now    func() time.Time
	leeway time.Duration
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.RWMutex
	sessions map[string]int64 // sid → until (Unix seconds)
	users    map[string]notBefore
	clients  map[string]notBefore // deleted clients: all their tokens
	changed  map[string]notBefore // changed clients: their client_credentials tokens
	lastID   string
	lastSeen time.Time
	caughtUp bool
	conn     bool

	events, reconnects, gaps, dropped atomic.Uint64
	ready                             chan struct{} // closed at the first catch-up
	readyOnce                         sync.Once
}

func newRevocations(cfg Revocations, feedURL func(context.Context) (string, error), log *slog.Logger, now func() time.Time, leeway time.Duration) *revocations {
	if cfg.MaxLag <= 0 {
		cfg.MaxLag = DefaultMaxLag
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxRevocations
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	return &revocations{
		cfg: cfg, url: feedURL, client: client, log: log, now: now, leeway: leeway,
		sessions: map[string]int64{}, users: map[string]notBefore{}, clients: map[string]notBefore{}, changed: map[string]notBefore{},
		lastSeen: now(), ready: make(chan struct{}), done: make(chan struct{}),
	}
}

// start follows the feed until stop.
func (r *revocations) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.run(ctx)
}

func (r *revocations) stop() {
	r.cancel()
	<-r.done
}

// check refuses c if the feed revoked it, or, failing closed, if the feed
// is down.
func (r *revocations) check(c *Claims) error {
	iat := c.IssuedAt.UnixMilli()
	r.mu.RLock()
	_, sessionRevoked := r.sessions[c.SessionID]
	u, userEnded := r.users[c.Subject]
	cl, clientDeleted := r.clients[c.ClientID]
	ch, clientChanged := r.changed[c.ClientID]
	up := r.caughtUp && r.now().Sub(r.lastSeen) <= r.cfg.MaxLag
	r.mu.RUnlock()
	switch {
	case c.SessionID != "" && sessionRevoked,
		userEnded && iat < u.ms-u.ms%1000 && (c.SessionID == "" || c.SessionID != u.except),
		clientDeleted && iat <= cl.ms,
		clientChanged && c.SessionID == "" && iat <= ch.ms:
		return &tokenError{kind: ErrRevoked, desc: "the access token has been revoked"}
	case r.cfg.FailClosed && !up:
		return &tokenError{kind: ErrUnavailable, desc: feedDown}
	}
	return nil
}

// run keeps a stream open, reconnecting with exponential backoff and
// jitter, resuming after the last event received.
func (r *revocations) run(ctx context.Context) {
	defer close(r.done)
	sweep := time.NewTicker(revocationSweepEvery)
	defer sweep.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-sweep.C:
				r.sweep()
			}
		}
	}()
	delay := DefaultReconnectMinDelay
	for ctx.Err() == nil {
		start := r.now()
		err := r.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		r.reconnects.Add(1)
		if r.now().Sub(start) > revocationIdleTimeout {
			delay = DefaultReconnectMinDelay // it was a healthy stream
		}
		r.log.LogAttrs(ctx, slog.LevelWarn, "revocation feed: stream ended; reconnecting",
			slog.String("error", fmt.Sprint(err)), slog.Duration("delay", delay))
		// Full jitter: replicas of a service do not reconnect in lockstep.
		wait := delay/2 + time.Duration(rand.Int63n(int64(delay/2)+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		delay = min(2*delay, DefaultReconnectMaxDelay)
	}
}

// stream reads one GET /events until it ends.
func (r *revocations) stream(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	feedURL, err := r.url(ctx)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, feedURL, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(url.QueryEscape(r.cfg.ClientID), url.QueryEscape(r.cfg.ClientSecret))
	req.Header.Set("Accept", "text/event-stream")
	r.mu.RLock()
	last := r.lastID
	r.mu.RUnlock()
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s %s", feedURL, resp.Status, strings.TrimSpace(string(body)))
	}
	r.setConnected(true)
	defer r.setConnected(false)
	// A stream that goes silent (a dead replica behind a proxy) is ended
	// by the watchdog; tokend sends a heartbeat every few seconds.
	watchdog := time.AfterFunc(revocationIdleTimeout, cancel)
	defer watchdog.Stop()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxRevocationFrameBytes)
	var id, event string
	var data []byte
	for sc.Scan() {
		watchdog.Reset(revocationIdleTimeout)
		line := sc.Bytes()
		if len(line) == 0 {
			if event != "" {
				r.apply(ctx, id, event, data)
			}
			id, event, data = "", "", data[:0]
			continue
		}
		field, value, _ := strings.Cut(string(line), ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			id = value
		case "event":
			event = value
		case "data":
			data = append(data, value...)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

func (r *revocations) setConnected(c bool) {
	r.mu.Lock()
	r.conn = c
	if !c {
		r.caughtUp = false
	}
	r.mu.Unlock()
}

// feedClaims is the "tokend" member of an event's payload.
type feedClaims struct {
	Kind      string   `json:"kind"`
	Subject   string   `json:"sub"`
	Session   string   `json:"sid"`
	Client    string   `json:"client_id"`
	NotBefore int64    `json:"not_before_ms"`
	Except    string   `json:"except_sid"`
	Sessions  []string `json:"sids"`
	Until     int64    `json:"until"`
}

// apply acts on one frame.
func (r *revocations) apply(ctx context.Context, id, event string, data []byte) {
	now := r.now()
	switch event {
	case "heartbeat":
		r.mu.Lock()
		r.lastSeen, r.caughtUp = now, true
		r.mu.Unlock()
		r.readyOnce.Do(func() { close(r.ready) })
	case "gap":
		r.gaps.Add(1)
		r.log.LogAttrs(ctx, slog.LevelError, "revocation feed: tokend no longer holds every event since the last one received; revocations may have been missed",
			slog.String("detail", string(data)))
	case "session-revoked", "client-deleted", "client-updated":
		r.applyRevocation(ctx, id, now, data)
	default:
		// Another event of the feed: nothing to refuse, but the stream
		// resumes after it.
		if id != "" {
			r.mu.Lock()
			r.lastID, r.lastSeen = id, now
			r.mu.Unlock()
		}
	}
}

// applyRevocation records a session-revoked, client-deleted or
// client-updated event (the last refuses something only when it carries a
// not-before time).
func (r *revocations) applyRevocation(ctx context.Context, id string, now time.Time, data []byte) {
	var p struct {
		Tokend feedClaims `json:"tokend"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		r.log.LogAttrs(ctx, slog.LevelWarn, "revocation feed: malformed event", slog.String("id", id), slog.String("error", err.Error()))
		return
	}
	e := p.Tokend
	r.mu.Lock()
	switch e.Kind {
	case "session":
		if e.Session != "" {
			r.sessions[e.Session] = max(r.sessions[e.Session], e.Until)
		}
	case "user":
		// The sessions it names are refused whatever their tokens' iat.
		for _, sid := range e.Sessions {
			if sid != "" && sid != e.Except {
				r.sessions[sid] = max(r.sessions[sid], e.Until)
			}
		}
		if e.Subject != "" {
			r.users[e.Subject] = later(r.users[e.Subject], notBefore{ms: e.NotBefore, except: e.Except, until: e.Until})
		}
	case "client":
		if e.Client != "" {
			r.clients[e.Client] = later(r.clients[e.Client], notBefore{ms: e.NotBefore, until: e.Until})
		}
	case "client_updated":
		if e.Client != "" && e.NotBefore > 0 {
			r.changed[e.Client] = later(r.changed[e.Client], notBefore{ms: e.NotBefore, until: e.Until})
		}
	}
	if id != "" {
		r.lastID = id
	}
	r.lastSeen = now
	over := len(r.sessions)+len(r.users)+len(r.clients)+len(r.changed) > r.cfg.MaxEntries
	r.mu.Unlock()
	r.events.Add(1)
	if over {
		r.sweep()
	}
}

// later keeps the newer of two not-before times (a newer end supersedes
// an older one: every token the older refuses, the newer refuses too,
// except the session the newer exempts, which was alive when it ended).
func later(old, nb notBefore) notBefore {
	if nb.ms >= old.ms {
		nb.until = max(nb.until, old.until)
		return nb
	}
	old.until = max(old.until, nb.until)
	return old
}

// sweep forgets the entries whose tokens have expired (with the leeway
// Verify gives exp), then, over MaxEntries, those that expire soonest.
func (r *revocations) sweep() {
	cutoff := r.now().Add(-r.leeway).Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, until := range r.sessions {
		if until < cutoff {
			delete(r.sessions, k)
		}
	}
	for _, m := range []map[string]notBefore{r.users, r.clients, r.changed} {
		for k, nb := range m {
			if nb.until < cutoff {
				delete(m, k)
			}
		}
	}
	over := len(r.sessions) + len(r.users) + len(r.clients) + len(r.changed) - r.cfg.MaxEntries
	if over <= 0 {
		return
	}
	// Rare: a burst beyond the bound. Drop the sessions expiring soonest.
	type entry struct {
		sid   string
		until int64
	}
	all := make([]entry, 0, len(r.sessions))
	for k, u := range r.sessions {
		all = append(all, entry{k, u})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].until < all[j].until })
	for i := 0; i < over && i < len(all); i++ {
		delete(r.sessions, all[i].sid)
		r.dropped.Add(1)
	}
}

func (r *revocations) stats() RevocationStats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return RevocationStats{
		Connected: r.conn, CaughtUp: r.caughtUp, LastEventID: r.lastID, LastSeen: r.lastSeen,
		Sessions: len(r.sessions), Users: len(r.users), Clients: len(r.clients) + len(r.changed),
		Events: r.events.Load(), Reconnects: r.reconnects.Load(), Gaps: r.gaps.Load(), Dropped: r.dropped.Load(),
	}
}

// RevocationLag is the time since the Verifier last heard from the
// revocation feed (an event or a heartbeat); export it as a gauge and
// alert when it exceeds a few heartbeats. Without WithRevocations it is 0.
func (v *Verifier) RevocationLag() time.Duration {
	if v.rev == nil {
		return 0
	}
	v.rev.mu.RLock()
	defer v.rev.mu.RUnlock()
	return v.now().Sub(v.rev.lastSeen)
}

// RevocationStats describes the revocation feed as the Verifier follows
// it (the zero value without WithRevocations).
func (v *Verifier) RevocationStats() RevocationStats {
	if v.rev == nil {
		return RevocationStats{}
	}
	return v.rev.stats()
}

// WaitRevocations blocks until the feed has caught up for the first time
// (every revocation tokend retains has been received), or ctx ends. A
// service may call it before it starts serving.
func (v *Verifier) WaitRevocations(ctx context.Context) error {
	if v.rev == nil {
		return nil
	}
	select {
	case <-v.rev.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("verify: revocation feed not caught up: %w", ctx.Err())
	}
}

// Close stops following the revocation feed. The Verifier keeps
// verifying, with the revocations it has.
func (v *Verifier) Close() error {
	if v.rev != nil {
		v.closeOnce.Do(v.rev.stop)
	}
	return nil
}

// followRevocations starts following the feed and adds its check to
// Verify's. Its URL is Revocations.URL, or else the one the metadata
// names, or else the JWKS URL's origin + /events; when the metadata has
// not been read yet (known is false: tokend was not reachable at New), the
// feed's first connection reads it.
func (v *Verifier) followRevocations(ctx context.Context, r Revocations, known bool) error {
	feedURL := v.feedURL
	if r.URL != "" {
		if err := checkURL(r.URL); err != nil {
			return fmt.Errorf("verify: revocation feed URL: %w", err)
		}
		feedURL = func(context.Context) (string, error) { return r.URL, nil }
	} else if known {
		if _, err := v.feedURL(ctx); err != nil {
			return err
		}
	}
	v.rev = newRevocations(r, feedURL, v.log, v.now, v.leeway)
	v.checks = append(v.checks, func(_ context.Context, c *Claims) error { return v.rev.check(c) })
	v.rev.start()
	return nil
}

// feedURL is the feed's URL when Revocations.URL is empty.
func (v *Verifier) feedURL(ctx context.Context) (string, error) {
	jwks, events, err := v.resolve(ctx)
	if err != nil {
		return "", err
	}
	if events == "" {
		if events, err = eventsURL(jwks); err != nil {
			return "", fmt.Errorf("verify: revocation feed URL: %w", err)
		}
	}
	if err := checkURL(events); err != nil {
		return "", fmt.Errorf("verify: revocation feed URL: %w", err)
	}
	return events, nil
}

// eventsURL is the feed's URL when Revocations.URL is empty and the
// metadata did not name one: the JWKS URL's origin + /events.
func eventsURL(jwksURL string) (string, error) {
	u, err := url.Parse(jwksURL)
	if err != nil {
		return "", err
	}
	return u.Scheme + "://" + u.Host + "/events", nil
}
