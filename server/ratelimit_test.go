package server_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/ratelimit"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/memstore"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/token"
)

// limiterFor returns the limiter that goes with st, as serve picks it: in
// Redis next to a Redis store, in memory with the embedded one.
func limiterFor(t *testing.T, st store.Store, limits ratelimit.Limits) server.LoginLimiter {
	t.Helper()
	if rs, ok := st.(*redisstore.Store); ok {
		prefix := testredis.Prefix(t)
		rdb := testredis.Client(t)
		t.Cleanup(func() { _ = testredis.DeletePrefix(context.Background(), rdb, "rate:"+prefix) })
		return ratelimit.NewRedis(rs.Redis(), prefix, limits)
	}
	return ratelimit.NewMemory(limits, ratelimit.MemoryOptions{})
}

// withProxies trusts the test client's own address as a reverse proxy, so
// tests choose the client address with X-Forwarded-For.
func withProxies(prefixes ...string) func(*server.Options) {
	return func(o *server.Options) {
		for _, p := range prefixes {
			o.TrustedProxies = append(o.TrustedProxies, netip.MustParsePrefix(p))
		}
	}
}

// postFrom posts a form with extra headers (X-Forwarded-For, Authorization).
func (e *env) postFrom(path string, form url.Values, header http.Header) answer {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	must(e.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	return e.do(req)
}

func xff(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }

func passwordForm(user, password string) url.Values {
	return url.Values{"grant_type": {"password"}, "client_id": {publicApp}, "username": {user}, "password": {password}}
}

func retryAfter(t *testing.T, a answer) int {
	t.Helper()
	n, err := strconv.Atoi(a.header.Get("Retry-After"))
	if err != nil || n < 1 {
		t.Fatalf("429 without a usable Retry-After: %v %s", a.header, a.body)
	}
	return n
}

// Brute-force protection on the password grant (docs/design.md, "Brute-force protection": 429 +
// Retry-After), on both stores: per account (existing and unknown
// usernames alike, case-insensitively), per client address, after client
// authentication, and a known address skips the account's ceiling.
func TestLoginRateLimit(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		st := newStore(t)
		limits := ratelimit.Limits{PerAccount: ratelimit.Rate{N: 3, Period: time.Hour}, PerIP: ratelimit.Rate{N: 6, Period: time.Hour}}
		e := newEnv(t, st, time.Hour, withProxies("127.0.0.1/32"), func(o *server.Options) {
			o.LoginLimiter = limiterFor(t, st, limits)
		})
		e.addUser("bob", "bob-password-1234")
		e.addUser("carol", "carol-password-1234")
		n := 0
		fresh := func() http.Header { n++; return xff(fmt.Sprintf("198.51.100.%d", n)) } // a new address per attempt

		// An existing and an unknown account: three failures each, then 429
		// — even for the right password — with the same answer.
		var answers [2]answer
		for i, user := range []string{testUser, "nobody-at-all"} {
			for k := 0; k < 3; k++ {
				wantError(t, e.postFrom("/oauth/token", passwordForm(user, "wrong"), fresh()), 400, "invalid_grant", "invalid username or password")
			}
			a := e.postFrom("/oauth/token", passwordForm(user, testPassword), fresh())
			wantError(t, a, http.StatusTooManyRequests, "slow_down", "too many sign-in attempts for this account")
			if ra := retryAfter(t, a); ra < 1100 || ra > 1201 { // one attempt per 20 minutes
				t.Fatalf("Retry-After %d, want about 1200", ra)
			}
			if a.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("429 headers: %v", a.header)
			}
			answers[i] = a
		}
		if answers[0].str("error_description") != answers[1].str("error_description") {
			t.Fatalf("existing and unknown accounts answer differently: %s / %s", answers[0].body, answers[1].body)
		}
		// Case-insensitive, like the username lookup.
		wantError(t, e.postFrom("/oauth/token", passwordForm(strings.ToUpper(testUser), testPassword), fresh()), 429, "slow_down", "account")

		// The client is authenticated first: no 429 (and no hint about the
		// account) for a caller that is not a client.
		bad := fresh()
		bad.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(backendApp+":wrong")))
		form := passwordForm(testUser, testPassword)
		form.Del("client_id")
		wantError(t, e.postFrom("/oauth/token", form, bad), 401, "invalid_client", "")
		unknown := passwordForm(testUser, testPassword)
		unknown.Set("client_id", "no-such-client")
		wantError(t, e.postFrom("/oauth/token", unknown, fresh()), 401, "invalid_client", "")

		// A correct password makes its address known to the account: when
		// an attacker has spent bob's ceiling from elsewhere, bob still
		// signs in from there, and only from there.
		home := xff("192.0.2.77")
		if a := e.postFrom("/oauth/token", passwordForm("bob", "bob-password-1234"), home); a.status != 200 {
			t.Fatalf("bob's sign-in: %d %s", a.status, a.body)
		}
		for k := 0; k < 2; k++ { // the rest of the ceiling (3)
			wantError(t, e.postFrom("/oauth/token", passwordForm("bob", "wrong"), fresh()), 400, "invalid_grant", "")
		}
		wantError(t, e.postFrom("/oauth/token", passwordForm("bob", "wrong"), fresh()), 429, "slow_down", "account")
		wantError(t, e.postFrom("/oauth/token", passwordForm("bob", "bob-password-1234"), fresh()), 429, "slow_down", "account")
		if a := e.postFrom("/oauth/token", passwordForm("bob", "bob-password-1234"), home); a.status != 200 {
			t.Fatalf("bob's sign-in from home during the attack: %d %s", a.status, a.body)
		}

		// Per address: every attempt counts, whatever the account.
		for k := 0; k < 6; k++ {
			wantError(t, e.postFrom("/oauth/token", passwordForm(fmt.Sprintf("user%d", k), "wrong"), xff("203.0.113.9")), 400, "invalid_grant", "")
		}
		a := e.postFrom("/oauth/token", passwordForm("user-new", "wrong"), xff("203.0.113.9"))
		wantError(t, a, 429, "slow_down", "from this address")
		if ra := retryAfter(t, a); ra < 500 || ra > 601 { // one attempt per 10 minutes
			t.Fatalf("Retry-After %d, want about 600", ra)
		}
		wantError(t, e.postFrom("/oauth/token", passwordForm("user-new", "wrong"), xff("203.0.113.10")), 400, "invalid_grant", "")

		// Other accounts, and other grants, are not affected.
		c := e.postFrom("/oauth/token", passwordForm("carol", "carol-password-1234"), fresh())
		if c.status != 200 {
			t.Fatalf("carol's sign-in: %d %s", c.status, c.body)
		}
		if a := e.refresh(c.str("refresh_token")); a.status != 200 {
			t.Fatalf("refresh: %d %s", a.status, a.body)
		}

		logs := e.logs.String()
		if !strings.Contains(logs, `"event":"signin.rate_limited"`) || !strings.Contains(logs, `"limit":"account"`) || !strings.Contains(logs, `"limit":"ip"`) {
			t.Fatalf("no rate-limit audit events:\n%s", logs)
		}
	})
}

// No lockout, bounded guessing (docs/design.md, "Brute-force protection
// (password grant)") through HTTP, counted: an attacker spreading guesses
// over 300 addresses gets exactly the account ceiling's guesses (each a real
// password check), while the owner keeps signing in from their own address,
// and the per-address limit still stops guessing from that address.
func TestLoginNoLockout(t *testing.T) {
	backends(t, func(t *testing.T, newStore func(t *testing.T) store.Store) {
		st := newStore(t)
		h := &countingHasher{PasswordHasher: credential.NewHasher(fastArgon, 0)}
		limits := ratelimit.Limits{
			PerIP:        ratelimit.Rate{N: 100, Period: time.Minute},
			PerAccountIP: ratelimit.Rate{N: 5, Period: 15 * time.Minute},
			PerAccount:   ratelimit.Rate{N: 20, Period: 24 * time.Hour},
		}
		e := newEnv(t, st, time.Hour, withProxies("127.0.0.1/32"), func(o *server.Options) {
			o.Passwords = h
			o.LoginLimiter = limiterFor(t, st, limits)
		})
		home := xff("192.0.2.10")
		signIn := func() {
			t.Helper()
			if a := e.postFrom("/oauth/token", passwordForm(testUser, testPassword), home); a.status != 200 {
				t.Fatalf("the owner's sign-in from home: %d %s", a.status, a.body)
			}
		}
		signIn() // an address the account has signed in from (one of the ceiling's 20)

		checks := func() int64 { return h.verifies.Load() + h.dummies.Load() }
		before := checks()
		guessed, limited, owner := 0, 0, 0
		for i := 0; i < 300; i++ {
			a := e.postFrom("/oauth/token", passwordForm(testUser, fmt.Sprintf("guess-%d", i)), xff(fmt.Sprintf("10.0.%d.%d", i/250, i%250+1)))
			switch a.status {
			case 400:
				guessed++
			case 429:
				limited++
			default:
				t.Fatalf("guess %d: %d %s", i, a.status, a.body)
			}
			if i%30 == 0 {
				signIn()
				owner++
			}
		}
		if guessed != 19 || limited != 281 {
			t.Fatalf("%d guesses went through and %d were refused; want the rest of the ceiling, 19, and 281", guessed, limited)
		}
		if got := checks() - before; got != int64(guessed+owner) {
			t.Fatalf("%d password checks, want %d guesses + %d sign-ins", got, guessed, owner)
		}
		// At home, mistakes are limited per address (5), not locked out.
		for k := 0; k < 5; k++ {
			wantError(t, e.postFrom("/oauth/token", passwordForm(testUser, "typo"), home), 400, "invalid_grant", "")
		}
		wantError(t, e.postFrom("/oauth/token", passwordForm(testUser, testPassword), home), 429, "slow_down", "for this account from this address")
		if !strings.Contains(e.logs.String(), `"limit":"account_ip"`) {
			t.Fatal("no audit line for the per-address limit")
		}
	})
}

// The limiter runs before the password hash: a refused attempt costs no
// argon2id work, for a known and an unknown account alike. Counted, not
// timed.
func TestLoginRateLimitBeforePasswordWork(t *testing.T) {
	h := &countingHasher{PasswordHasher: credential.NewHasher(fastArgon, 0)}
	e := newEnv(t, redisStore(t), time.Hour, func(o *server.Options) {
		o.Passwords = h
		o.LoginLimiter = ratelimit.NewMemory(ratelimit.Limits{PerAccount: ratelimit.Rate{N: 2, Period: time.Hour}}, ratelimit.MemoryOptions{})
	})
	work := func() int64 { return h.verifies.Load() + h.dummies.Load() }
	for _, user := range []string{testUser, "unknown-user"} {
		before := work()
		for k := 0; k < 2; k++ {
			wantError(t, e.post("/oauth/token", passwordForm(user, "wrong")), 400, "invalid_grant", "")
		}
		if got := work() - before; got != 2 {
			t.Fatalf("%s: %d password checks for 2 allowed attempts", user, got)
		}
		for k := 0; k < 5; k++ {
			wantError(t, e.post("/oauth/token", passwordForm(user, "wrong")), 429, "slow_down", "")
		}
		if got := work() - before; got != 2 {
			t.Fatalf("%s: refused attempts ran %d password checks", user, got-2)
		}
	}
}

// Self-registration spends an argon2id hash too, so it draws on the same
// per-address budget as sign-in, and repeated registrations of one name are
// limited like sign-ins to one account.
func TestSignupRateLimit(t *testing.T) {
	h := &countingHasher{PasswordHasher: credential.NewHasher(fastArgon, 0)}
	e := newEnv(t, redisStore(t), time.Hour, func(o *server.Options) {
		o.Passwords = h
		o.AllowSignup = true
		o.LoginLimiter = ratelimit.NewMemory(ratelimit.Limits{PerAccount: ratelimit.Rate{N: 2, Period: time.Hour}, PerIP: ratelimit.Rate{N: 5, Period: time.Hour}}, ratelimit.MemoryOptions{})
	})
	signup := func(name string) answer {
		return e.post("/users", url.Values{"username": {name}, "password": {"a fine long password"}})
	}
	if a := signup("carol"); a.status != http.StatusCreated {
		t.Fatalf("signup: %d %s", a.status, a.body)
	}
	if a := signup("carol"); a.status != http.StatusConflict {
		t.Fatalf("second signup: %d %s", a.status, a.body)
	}
	a := signup("carol") // the name's budget (2) is spent
	wantError(t, a, http.StatusTooManyRequests, "slow_down", "")
	if a.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	hashes := h.hashes.Load()
	// The address's budget (5) counts every attempt, refused ones too, and
	// is shared with sign-in: one sign-in and one more signup spend it.
	e.post("/oauth/token", passwordForm(testUser, testPassword))
	if a := signup("dave"); a.status != http.StatusCreated {
		t.Fatalf("signup within the address budget: %d %s", a.status, a.body)
	}
	wantError(t, signup("erin"), http.StatusTooManyRequests, "slow_down", "address")
	if got := h.hashes.Load() - hashes; got != 1 {
		t.Fatalf("%d password hashes after the limit, want only dave's", got)
	}
}

// X-Forwarded-For is believed only from configured proxies, and then only
// up to the first address that is not a proxy (from the right): the client
// address lands in the session, the audit log and the access log.
func TestTrustedProxies(t *testing.T) {
	sessionIP := func(e *env, header http.Header) string {
		e.t.Helper()
		a := e.postFrom("/oauth/token", passwordForm(testUser, testPassword), header)
		if a.status != 200 {
			e.t.Fatalf("sign in: %d %s", a.status, a.body)
		}
		rt, err := token.ParseRefresh(a.str("refresh_token"))
		must(e.t, err)
		s, err := e.store.Session(context.Background(), rt.UserID, rt.SessionID)
		must(e.t, err)
		return s.IP
	}
	h := func(values ...string) http.Header { return http.Header{"X-Forwarded-For": values} }

	untrusting := newEnv(t, memstore.New(), time.Hour)
	if ip := sessionIP(untrusting, h("203.0.113.5")); ip != "127.0.0.1" {
		t.Fatalf("without trusted proxies X-Forwarded-For was believed: %s", ip)
	}

	e := newEnv(t, memstore.New(), time.Hour, withProxies("127.0.0.1/32", "10.0.0.0/8", "fd00::/8"))
	for _, tc := range []struct {
		header http.Header
		want   string
	}{
		{nil, "127.0.0.1"},
		{h("203.0.113.5"), "203.0.113.5"},
		{h("6.6.6.6, 203.0.113.5, 10.1.2.3"), "203.0.113.5"},   // a spoofed left-most entry is never reached
		{h("6.6.6.6", "203.0.113.7, 10.0.0.1"), "203.0.113.7"}, // several header lines are one list
		{h("203.0.113.8, not-an-ip"), "127.0.0.1"},             // garbage ends the walk at the last good hop
		{h("10.0.0.9"), "10.0.0.9"},                            // only proxies: the left-most
		{h("[2001:db8::1]:443"), "2001:db8::1"},
		{h("::ffff:198.51.100.4, fd00::1"), "198.51.100.4"},
	} {
		if got := sessionIP(e, tc.header); got != tc.want {
			t.Errorf("X-Forwarded-For %q: client %s, want %s", tc.header.Values("X-Forwarded-For"), got, tc.want)
		}
	}
	// A sign-in's request line is its audit line (msg "audit", event
	// signin.success), with the client address once.
	logs := e.logs.String()
	if !strings.Contains(logs, `"event":"signin.success","method":"POST"`) || !strings.Contains(logs, `"ip":"203.0.113.7"`) ||
		!strings.Contains(logs, `"msg":"audit","request_id"`) || strings.Contains(logs, `"ip":"6.6.6.6"`) {
		t.Fatalf("the logs do not carry the client address:\n%s", logs)
	}
}
