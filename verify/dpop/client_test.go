package dpop_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokend/tokend/verify/dpop"
)

// opaqueSigner hides the key type behind crypto.Signer, as an HSM does:
// ECDSA signatures come back in ASN.1.
type opaqueSigner struct{ crypto.Signer }

func TestNewProof(t *testing.T) {
	hsm, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		key  crypto.Signer
		alg  string
	}{
		{"ES256", key(t, "ES256", "a").Signer, "ES256"},
		{"EdDSA", key(t, "EdDSA", "a").Signer, "EdDSA"},
		{"RS256", key(t, "RS256", "a").Signer, "RS256"},
		{"a crypto.Signer", opaqueSigner{hsm}, "ES256"},
	} {
		t.Run(c.name, func(t *testing.T) {
			proof, err := dpop.NewProof(c.key, "POST", "https://api.example.com/orders?x=1#f", "tok", "n-1", testNow)
			if err != nil {
				t.Fatal(err)
			}
			var gotNonce string
			p, err := dpop.Check(proof, dpop.Params{
				Method: "POST", URL: "https://api.example.com/orders", AccessToken: "tok", Now: testNow,
				Algorithms: []string{"ES256", "EdDSA", "RS256"},
				Nonce:      func(n string, _ time.Time) error { gotNonce = n; return nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			want, _ := dpop.Thumbprint(c.key.Public())
			if p.Alg != c.alg || p.JKT != want || gotNonce != "n-1" || p.URL != "https://api.example.com/orders" || len(p.JTI) != 22 {
				t.Fatalf("%+v", p)
			}
			again, _ := dpop.NewProof(c.key, "POST", "https://api.example.com/orders", "tok", "", testNow)
			if q, err := dpop.Check(again, dpop.Params{Method: "POST", URL: "https://api.example.com/orders", Now: testNow, Algorithms: []string{c.alg}}); err != nil || q.ID == p.ID {
				t.Fatalf("a second proof: %v, same id: %v", err, q != nil && q.ID == p.ID)
			}
		})
	}
	if _, err := dpop.NewProof(nil, "GET", testURL, "", "", testNow); err == nil {
		t.Error("nil key")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := dpop.NewProof(p384, "GET", testURL, "", "", testNow); err == nil {
		t.Error("P-384 key")
	}
}

// resource is a resource server that checks proofs as verify does and
// asks for a nonce (RFC 9449 §9).
type resource struct {
	t      *testing.T
	nonces *dpop.Nonces
	replay dpop.ReplayCache
	seen   atomic.Int32 // requests
	mu     sync.Mutex
	bodies []string
}

func (rs *resource) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rs.seen.Add(1)
	body, _ := io.ReadAll(r.Body)
	rs.mu.Lock()
	rs.bodies = append(rs.bodies, string(body))
	rs.mu.Unlock()
	w.Header().Set("DPoP-Nonce", rs.nonces.Current(time.Now()))
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	params := dpop.Params{Method: r.Method, URL: "http://" + r.Host + r.URL.Path, Nonce: rs.nonces.Check}
	if scheme == "DPoP" {
		params.AccessToken = tok
	}
	p, err := dpop.Check(r.Header.Get("DPoP"), params)
	if err == nil {
		if seen, _ := rs.replay.Seen(r.Context(), p.ID, p.Expiry); seen {
			err = errors.New("replayed")
		}
	}
	switch {
	case errors.Is(err, dpop.ErrUseNonce) && r.URL.Path == "/token":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"use_dpop_nonce","error_description":"nonce"}`)
	case errors.Is(err, dpop.ErrUseNonce):
		w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="nonce", algs="ES256 EdDSA"`)
		w.WriteHeader(http.StatusUnauthorized)
	case err != nil:
		rs.t.Errorf("proof refused: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
	default:
		fmt.Fprintf(w, "%s %s", scheme, tok)
	}
}

func TestTransport(t *testing.T) {
	nonces, _ := dpop.NewNonces([][]byte{[]byte("0123456789abcdef")}, time.Minute)
	rs := &resource{t: t, nonces: nonces, replay: dpop.NewMemoryReplayCache(100)}
	srv := httptest.NewServer(rs)
	defer srv.Close()
	tr := &dpop.Transport{Key: key(t, "ES256", "a").Signer, Token: func(*http.Request) (string, error) { return "bound-token", nil }}
	client := &http.Client{Transport: tr}

	get := func(path string) string {
		t.Helper()
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	// The first request has no nonce: challenged, retried once.
	if got := get("/orders?id=1"); got != "DPoP bound-token" || rs.seen.Load() != 2 {
		t.Fatalf("%q after %d requests", got, rs.seen.Load())
	}
	// The nonce is remembered: no challenge now.
	get("/orders/2")
	if n := rs.seen.Load(); n != 3 {
		t.Fatalf("%d requests", n)
	}

	// A token request (no Token, no Authorization): 400 use_dpop_nonce,
	// retried with the same body.
	tr2 := &dpop.Transport{Key: key(t, "EdDSA", "a").Signer}
	form := "grant_type=client_credentials"
	resp, err := (&http.Client{Transport: tr2}).Post(srv.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rs.mu.Lock()
	bodies := rs.bodies[len(rs.bodies)-2:]
	rs.mu.Unlock()
	if resp.StatusCode != http.StatusOK || bodies[0] != form || bodies[1] != form {
		t.Fatalf("token request: %d, bodies %q", resp.StatusCode, bodies)
	}

	// A body that cannot be replayed: the challenge is the answer, and
	// its body is intact.
	tr3 := &dpop.Transport{Key: key(t, "EdDSA", "b").Signer}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/token", io.NopCloser(strings.NewReader(form)))
	resp, err = tr3.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Error string }
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusBadRequest || e.Error != "use_dpop_nonce" {
		t.Fatalf("no GetBody: %d %q %v", resp.StatusCode, e.Error, err)
	}
	resp.Body.Close()

	// A request that carries its own Authorization: DPoP keeps it.
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/x", nil)
	req.Header.Set("Authorization", "DPoP own-token")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "DPoP own-token" || req.Header.Get("DPoP") != "" {
		t.Fatalf("%q; the caller's request was changed: %v", b, req.Header)
	}

	// The token source's error.
	bad := &dpop.Transport{Key: key(t, "ES256", "a").Signer, Token: func(*http.Request) (string, error) { return "", errors.New("no token") }}
	if _, err := (&http.Client{Transport: bad}).Get(srv.URL); err == nil || !strings.Contains(err.Error(), "no token") {
		t.Fatalf("token error: %v", err)
	}
}

// Concurrent requests through one Transport share its nonces safely.
func TestTransportConcurrent(t *testing.T) {
	nonces, _ := dpop.NewNonces([][]byte{[]byte("0123456789abcdef")}, time.Minute)
	rs := &resource{t: t, nonces: nonces, replay: dpop.NewMemoryReplayCache(1000)}
	srv := httptest.NewServer(rs)
	defer srv.Close()
	client := &http.Client{Transport: &dpop.Transport{Key: key(t, "ES256", "a").Signer, Token: func(*http.Request) (string, error) { return "t", nil }}}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				resp, err := client.Get(srv.URL + "/r")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
}
