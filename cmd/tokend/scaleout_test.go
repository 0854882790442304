package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testredis"
)

// deployment is three `tokend serve` processes of the real binary on one
// Redis (single node or Cluster), sharing a key directory, with users and
// clients made by the CLI binary.
type deployment struct {
	t        *testing.T
	bin      string
	env      []string
	replicas []*replica
	hc       *http.Client
	users    []string
	secret   string // of the confidential client "backend"
}

const scalePassword = "scale-out-password"

func deploy(t *testing.T, redisURL string, extraEnv ...string) *deployment {
	t.Helper()
	bin := tokendBinary(t)
	keysDir := t.TempDir()
	env := append([]string{
		"REDIS_URL=" + redisURL, "JWT_KEYS_DIR=" + keysDir, "JWT_ISSUER=http://tokend.test",
		"PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1", "LOG_LEVEL=warn",
		// Hundreds of sign-ins from 127.0.0.1: keep the limiter (and its
		// Redis scripts) in the path, with room for the test.
		"RATE_LIMIT_LOGIN_PER_IP=100000/1m",
	}, extraEnv...)
	d := &deployment{t: t, bin: bin, env: env, hc: &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second,
	}}
	t.Cleanup(d.hc.CloseIdleConnections)
	mustRunBin(t, bin, env, "", "keys", "generate", "--dir", keysDir)
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("user%d", i)
		mustRunBin(t, bin, env, scalePassword+"\n", "users", "create", name, "--role", "user")
		d.users = append(d.users, name)
	}
	mustRunBin(t, bin, env, "", "clients", "create", "web", "--public")
	out := mustRunBin(t, bin, env, "", "clients", "create", "backend", "--grants", "password,refresh_token,client_credentials", "--scopes", "read write")
	m := regexp.MustCompile(`client_secret: (cs_[A-Za-z0-9_-]{43})`).FindStringSubmatch(out.stdout)
	if m == nil {
		t.Fatalf("no client secret in %q", out.stdout)
	}
	d.secret = m[1]
	for i := 0; i < 3; i++ {
		d.replicas = append(d.replicas, startServe(t, bin, env))
	}
	return d
}

func (d *deployment) url(i int, path string) string { return d.replicas[i%len(d.replicas)].base + path }

func (d *deployment) signIn(i int, user string) string {
	d.t.Helper()
	r := post(d.t, d.hc, d.url(i, "/oauth/token"), url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {user}, "password": {scalePassword}})
	if r.status != 200 {
		d.t.Fatalf("sign in %s at replica %d: %d %s", user, i%3, r.status, r.body)
	}
	return r.str("refresh_token")
}

func (d *deployment) refresh(i int, rt string) reply {
	return post(d.t, d.hc, d.url(i, "/oauth/token"), url.Values{"grant_type": {"refresh_token"}, "client_id": {"web"}, "refresh_token": {rt}})
}

func (d *deployment) wantRefused(i int, rt, descPart string) {
	d.t.Helper()
	r := d.refresh(i, rt)
	if r.status != 400 || r.str("error") != "invalid_grant" || !strings.Contains(r.str("error_description"), descPart) {
		d.t.Fatalf("refresh at replica %d: %d %s, want invalid_grant %q", i%3, r.status, r.body, descPart)
	}
}

// race runs rounds of 40 concurrent refreshes of one token, spread over
// the three replicas (one key directory, so one set of refresh keys). With
// the default REFRESH_REUSE_WINDOW every one succeeds and all carry the
// same refresh token, whichever replica answered: one rotation. The child
// then refreshes at another replica, after which the sign-in token is
// reuse (its child has been used) and revokes the session everywhere.
// With strict single use (REFRESH_REUSE_WINDOW=0), exactly one succeeds
// and the losers' reuse revokes the session, so the winner's token is
// refused afterwards.
func (d *deployment) race(rounds int, strict bool) {
	t := d.t
	const concurrent = 40
	start := time.Now()
	total := 0
	for round := 0; round < rounds; round++ {
		rt := d.signIn(round, d.users[round%len(d.users)])
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winners []string
		statuses := map[int]int{}
		gate := make(chan struct{})
		for g := 0; g < concurrent; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				r := d.refresh(g, rt)
				mu.Lock()
				defer mu.Unlock()
				statuses[r.status]++
				switch {
				case r.status == 200:
					winners = append(winners, r.str("refresh_token"))
				case r.status == 400 && r.str("error") == "invalid_grant" && strict:
				default:
					t.Errorf("round %d: %d %s", round, r.status, r.body)
				}
			}()
		}
		close(gate)
		wg.Wait()
		total += concurrent
		if strict {
			if len(winners) != 1 {
				t.Fatalf("round %d: %d successes of %d concurrent refreshes on 3 replicas, want exactly 1 (%v)", round, len(winners), concurrent, statuses)
			}
			d.wantRefused(round+1, winners[0], "revoked")
			continue
		}
		if len(winners) != concurrent {
			t.Fatalf("round %d: %d successes of %d concurrent refreshes on 3 replicas, want all (%v)", round, len(winners), concurrent, statuses)
		}
		for _, w := range winners {
			if w != winners[0] {
				t.Fatalf("round %d: two refresh tokens handed out for one token:\n%s\n%s", round, winners[0], w)
			}
		}
		if r := d.refresh(round+1, winners[0]); r.status != 200 {
			t.Fatalf("round %d: the shared child at another replica: %d %s", round, r.status, r.body)
		}
		d.wantRefused(round+2, rt, "already used")
		d.wantRefused(round, winners[0], "revoked")
	}
	t.Logf("%d rounds × %d concurrent refreshes over 3 replicas (strict %v): %d requests, one rotation per round, in %v",
		rounds, concurrent, strict, total, time.Since(start).Round(time.Millisecond))
}

// Three replicas of the real binary on one private Redis: tokens made by
// one are good at the others, and 40 concurrent refreshes of one token
// spread over the three all get the same new token, 100 rounds in a row;
// with REFRESH_REUSE_WINDOW=0 exactly one succeeds.
func TestScaleOutThreeReplicas(t *testing.T) {
	srv := testredis.StartServer(t)
	d := deploy(t, srv.URL())
	d.crossReplica()
	d.race(100, false)
	t.Run("strict", func(t *testing.T) {
		d := deploy(t, testredis.StartServer(t).URL(), "REFRESH_REUSE_WINDOW=0")
		d.race(20, true)
	})
}

// The same on a three-master Redis Cluster, and rotation, revocation,
// logout everywhere, admin session revocation and user disable (by the
// CLI binary against the Cluster) all work in Cluster mode.
func TestScaleOutCluster(t *testing.T) {
	nodes := testredis.StartCluster(t, 3)
	d := deploy(t, testredis.ClusterURL(nodes))
	d.crossReplica()
	d.race(100, false)

	// Rotation across replicas.
	rt := d.signIn(0, "user0")
	for i := 1; i <= 6; i++ {
		r := d.refresh(i, rt)
		if r.status != 200 {
			t.Fatalf("rotation %d: %d %s", i, r.status, r.body)
		}
		rt = r.str("refresh_token")
	}
	// Revocation (RFC 7009) at one replica, seen by another.
	rt = d.signIn(0, "user1")
	if r := post(t, d.hc, d.url(1, "/oauth/revoke"), url.Values{"client_id": {"web"}, "token": {rt}}); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	d.wantRefused(2, rt, "revoked")
	// Logout everywhere.
	sessions := []string{d.signIn(0, "user2"), d.signIn(1, "user2"), d.signIn(2, "user2")}
	if r := post(t, d.hc, d.url(1, "/logout"), url.Values{"client_id": {"web"}, "refresh_token": {sessions[0]}, "scope": {"global"}}); r.status != 204 {
		t.Fatalf("logout everywhere: %d %s", r.status, r.body)
	}
	d.wantRefused(2, sessions[1], "revoked")
	d.wantRefused(0, sessions[2], "revoked")
	if out := mustRunBin(t, d.bin, d.env, "", "sessions", "list", "user2"); strings.Count(out.stdout, "\n") != 1 {
		t.Fatalf("sessions left after logout everywhere:\n%s", out.stdout)
	}
	// Admin revocation with the CLI.
	rt = d.signIn(2, "user0")
	if out := mustRunBin(t, d.bin, d.env, "", "sessions", "list", "user0"); !strings.Contains(out.stdout, "web") {
		t.Fatalf("sessions list: %s", out.stdout)
	}
	mustRunBin(t, d.bin, d.env, "", "sessions", "revoke", "user0", "--all")
	d.wantRefused(0, rt, "revoked")
	// Disabling a user with the CLI ends their sessions and sign-ins.
	rt = d.signIn(0, "user1")
	mustRunBin(t, d.bin, d.env, "", "users", "disable", "user1")
	d.wantRefused(1, rt, "disabled")
	if r := post(t, d.hc, d.url(2, "/oauth/token"), url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {"user1"}, "password": {scalePassword}}); r.status != 400 || !strings.Contains(r.str("error_description"), "disabled") {
		t.Fatalf("sign-in of a disabled user: %d %s", r.status, r.body)
	}
	mustRunBin(t, d.bin, d.env, "", "users", "enable", "user1")
	d.signIn(2, "user1")
}

// crossReplica: every replica serves the same keys, and an access token
// and a refresh token made by one are good at another.
func (d *deployment) crossReplica() {
	t := d.t
	var jwks []string
	for i := range d.replicas {
		resp, err := d.hc.Get(d.url(i, "/.well-known/jwks.json"))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("jwks at replica %d: %d %v", i, resp.StatusCode, err)
		}
		jwks = append(jwks, string(body))
	}
	if jwks[0] != jwks[1] || jwks[1] != jwks[2] {
		t.Fatalf("replicas publish different keys:\n%s", strings.Join(jwks, "\n"))
	}
	r := post(t, d.hc, d.url(0, "/oauth/token"), url.Values{"grant_type": {"password"}, "username": {"user0"}, "password": {scalePassword}}, "backend", d.secret)
	if r.status != 200 {
		t.Fatalf("sign in: %d %s", r.status, r.body)
	}
	for _, tok := range []string{r.str("access_token"), r.str("refresh_token")} {
		if in := post(t, d.hc, d.url(1, "/oauth/introspect"), url.Values{"token": {tok}}, "backend", d.secret); in.json["active"] != true {
			t.Fatalf("a token of replica 0 at replica 1: %s", in.body)
		}
	}
	if r := post(t, d.hc, d.url(2, "/oauth/token"), url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}, "backend", d.secret); r.status != 200 {
		t.Fatalf("refresh at replica 2: %d %s", r.status, r.body)
	}
}
