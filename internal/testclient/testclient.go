// Package testclient is, for tests, a frontend that keeps a session alive
// exactly as docs/integration.md tells frontends to: it refreshes, and
// after a 503 or a 429 (waiting Retry-After) or a network error (an answer
// that never arrived) it retries with the same refresh token; only
// invalid_grant ends the session. Fault-injection tests drive tokend with
// it and count the sessions that end.
//
// It also has LossyTransport, an http.RoundTripper that loses chosen
// answers after tokend sent them: the request was served, the frontend
// never learns the result.
package testclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultMaxAttempts bounds the attempts of one Refresh.
const DefaultMaxAttempts = 30

// Client refreshes sessions. Its fields must not change while it is used;
// a Client is safe for concurrent use if HTTP is.
type Client struct {
	// HTTP sends the requests; its Timeout is the frontend's patience.
	HTTP *http.Client
	// TokenURL returns the token endpoint for the n-th attempt (0, 1, …)
	// of a refresh, so a test may spread attempts over several replicas.
	TokenURL func(attempt int) string
	// ClientID is the public client's id.
	ClientID string
	// MaxAttempts bounds the attempts of one Refresh [DefaultMaxAttempts].
	MaxAttempts int
	// NetworkBackoff is the pause after a network error [100ms].
	NetworkBackoff time.Duration
	// Sleep waits before a retry; nil sleeps (or returns when ctx ends).
	// Tests may shorten Retry-After with it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Observe, if set, is called after every attempt (concurrently, from
	// the goroutines calling Refresh).
	Observe func(Attempt)
}

// Attempt is one request of a refresh and what came of it.
type Attempt struct {
	Token   string // the refresh token presented
	N       int    // 0 for the first attempt of a Refresh
	Status  int    // HTTP status; 0 after a network error
	Err     error  // the network error, if any
	Code    string // OAuth error code of an error answer
	Refresh string // the refresh token of a 200 answer
}

// Result is the outcome of one Refresh.
type Result struct {
	// Token is the new refresh token ("" when the session ended).
	Token string
	// Access is the new access token.
	Access string
	// Ended is set when tokend answered invalid_grant: a frontend sends
	// the person to sign in again. Reason is the error_description.
	Ended  bool
	Reason string
	// Attempts counts the requests sent; Unavailable the 503 and 429
	// answers and Network the network errors among them.
	Attempts, Unavailable, Network int
}

// ErrGaveUp is returned when MaxAttempts requests brought neither a new
// token nor invalid_grant. The frontend keeps its refresh token.
var ErrGaveUp = errors.New("testclient: tokend stayed unavailable")

// Refresh trades rt for a new refresh token, retrying as documented. An
// error means an answer no frontend expects (a 500, a 400 other than
// invalid_grant, a malformed body) or ErrGaveUp.
func (c *Client) Refresh(ctx context.Context, rt string) (Result, error) {
	var res Result
	max := c.MaxAttempts
	if max <= 0 {
		max = DefaultMaxAttempts
	}
	for n := 0; n < max; n++ {
		res.Attempts++
		a, wait, err := c.attempt(ctx, rt, n)
		if c.Observe != nil {
			c.Observe(a)
		}
		if err != nil {
			return res, err
		}
		switch {
		case a.Status == http.StatusOK:
			res.Token = a.Refresh
			res.Access = wait.access
			return res, nil
		case a.Status == 0:
			res.Network++
		case a.Status == http.StatusServiceUnavailable || a.Status == http.StatusTooManyRequests:
			res.Unavailable++
		case a.Code == "invalid_grant":
			res.Ended, res.Reason = true, wait.desc
			return res, nil
		default:
			return res, fmt.Errorf("testclient: refresh answered %d %s: %s", a.Status, a.Code, wait.desc)
		}
		if err := c.sleep(ctx, wait.d); err != nil {
			return res, err
		}
	}
	return res, ErrGaveUp
}

// answerInfo is what attempt learned besides the Attempt.
type answerInfo struct {
	d      time.Duration // wait before the next attempt
	access string
	desc   string
}

func (c *Client) attempt(ctx context.Context, rt string, n int) (Attempt, answerInfo, error) {
	a := Attempt{Token: rt, N: n}
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {c.ClientID}, "refresh_token": {rt}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.TokenURL(n), strings.NewReader(form.Encode()))
	if err != nil {
		return a, answerInfo{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return a, answerInfo{}, ctx.Err()
		}
		a.Err = err
		return a, answerInfo{d: c.backoff()}, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil { // the answer broke off: a network error too
		a.Err = err
		return a, answerInfo{d: c.backoff()}, nil
	}
	a.Status = resp.StatusCode
	var m struct {
		Refresh string `json:"refresh_token"`
		Access  string `json:"access_token"`
		Error   string `json:"error"`
		Desc    string `json:"error_description"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return a, answerInfo{}, fmt.Errorf("testclient: %d answer is not JSON: %q", resp.StatusCode, body)
	}
	a.Code, a.Refresh = m.Error, m.Refresh
	info := answerInfo{access: m.Access, desc: m.Desc}
	if a.Status == http.StatusOK && (m.Refresh == "" || m.Access == "") {
		return a, info, fmt.Errorf("testclient: 200 without tokens: %q", body)
	}
	if a.Status == http.StatusServiceUnavailable || a.Status == http.StatusTooManyRequests {
		s, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || s < 0 {
			return a, info, fmt.Errorf("testclient: %d without a valid Retry-After (%q)", a.Status, resp.Header.Get("Retry-After"))
		}
		info.d = time.Duration(s) * time.Second
	}
	return a, info, nil
}

func (c *Client) backoff() time.Duration {
	if c.NetworkBackoff > 0 {
		return c.NetworkBackoff
	}
	return 100 * time.Millisecond
}

func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		return c.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ErrAnswerLost is the network error LossyTransport returns for an answer
// it lost.
var ErrAnswerLost = errors.New("testclient: answer lost on the way back")

// LossyTransport is an http.RoundTripper that sends every request through
// Base (http.DefaultTransport if nil) and loses the answers Lose selects:
// tokend has served the request and sent its answer, the client gets
// ErrAnswerLost. A lost answer's body is kept (Lost) so a test can compare
// it with what the retry brings.
type LossyTransport struct {
	Base http.RoundTripper
	// Lose selects the answers to lose; it is called under a lock, one
	// call at a time, with the status and the answer's body.
	Lose func(req *http.Request, status int, body []byte) bool

	mu   sync.Mutex
	lost [][]byte
}

// RoundTrip implements http.RoundTripper.
func (l *LossyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := l.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil || l.Lose == nil {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	lose := l.Lose(req, resp.StatusCode, body)
	if lose {
		l.lost = append(l.lost, body)
	}
	l.mu.Unlock()
	if lose {
		return nil, ErrAnswerLost
	}
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp, nil
}

// Lost returns the bodies of the answers lost so far.
func (l *LossyTransport) Lost() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][]byte(nil), l.lost...)
}

// LoseFraction returns a Lose function that loses each 200 answer with
// probability p, drawn from a generator seeded with seed.
func LoseFraction(p float64, seed uint64) func(*http.Request, int, []byte) bool {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	return func(_ *http.Request, status int, _ []byte) bool {
		return status == http.StatusOK && rng.Float64() < p
	}
}

// Tally counts, for a fault test, the sessions that ended and the
// successful refreshes. It is safe for concurrent use.
type Tally struct {
	mu      sync.Mutex
	ended   map[int]string // session → why it ended
	refresh int
}

// Record notes the outcome of one Refresh of session i; an error fails the
// test (and ends the session). It returns the token to use next, "" once
// the session ended.
func (ty *Tally) Record(t testing.TB, i int, res Result, err error) string {
	t.Helper()
	ty.mu.Lock()
	defer ty.mu.Unlock()
	if ty.ended == nil {
		ty.ended = map[int]string{}
	}
	switch {
	case err != nil:
		t.Errorf("session %d: %v (%+v)", i, err, res)
		ty.ended[i] = err.Error()
		return ""
	case res.Ended:
		ty.ended[i] = res.Reason
		return ""
	}
	ty.refresh++
	return res.Token
}

// Ended returns how many sessions ended.
func (ty *Tally) Ended() int {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	return len(ty.ended)
}

// HasEnded reports whether session i ended.
func (ty *Tally) HasEnded(i int) bool {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	_, ok := ty.ended[i]
	return ok
}

// Alive refreshes each token of rts twice more (the chain goes on),
// recording the outcomes, and returns the tokens now held.
func (ty *Tally) Alive(t testing.TB, c *Client, rts []string) []string {
	t.Helper()
	out := make([]string, len(rts))
	for i, rt := range rts {
		for k := 0; k < 2 && rt != ""; k++ {
			res, err := c.Refresh(context.Background(), rt)
			rt = ty.Record(t, i, res, err)
		}
		out[i] = rt
	}
	return out
}

// Check logs, and fails the test unless it is 0, how many of n sessions
// ended under fault, and why: the figure of the table in docs/design.md,
// "Fault injection".
func (ty *Tally) Check(t testing.TB, fault string, n int) {
	t.Helper()
	ty.mu.Lock()
	defer ty.mu.Unlock()
	why := map[string]int{}
	for _, r := range ty.ended {
		why[r]++
	}
	t.Logf("%s: %d of %d sessions ended %v; %d successful refreshes", fault, len(ty.ended), n, why, ty.refresh)
	if len(ty.ended) > 0 {
		t.Errorf("%s: %d of %d sessions ended (%v), want 0", fault, len(ty.ended), n, why)
	}
}
