package dpoptest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/verify"
	"github.com/tokend/tokend/verify/dpop"
)

// redisReplay is the replay cache docs/integration.md shows: one Redis
// for every replica of a service, each proof id a key that expires with
// the proof (SET NX PXAT).
type redisReplay struct {
	rdb    redis.UniversalClient
	prefix string
}

func (c redisReplay) Seen(ctx context.Context, id string, until time.Time) (bool, error) {
	err := c.rdb.SetArgs(ctx, c.prefix+id, 1, redis.SetArgs{Mode: "NX", ExpireAt: until}).Err()
	if errors.Is(err, redis.Nil) {
		return true, nil // set before: a replay
	}
	return false, err
}

// staticKey is a verify.KeySet of one key.
type staticKey struct{ pub *ecdsa.PublicKey }

func (k staticKey) LookupKey(kid string) (verify.Key, bool) {
	return verify.Key{Algorithm: verify.ES256, Public: k.pub}, kid == "k1"
}

// Two replicas of a service share the replay cache in Redis: a proof
// accepted by one is refused by the other.
func TestReplayAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	cache := redisReplay{rdb: testredis.Client(t), prefix: testredis.Prefix(t) + "dpop:"}
	signing, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	holder, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jkt, _ := dpop.Thumbprint(holder.Public())
	const issuer, api = "https://auth.example.com", "https://api.example.com"
	now := time.Now()
	tok := testkit.Encode(t, map[string]any{"alg": "ES256", "kid": "k1", "typ": "at+jwt"}, map[string]any{
		"iss": issuer, "sub": "user-1", "aud": "orders", "client_id": "web", "jti": "j1",
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "cnf": map[string]any{"jkt": jkt},
	}, testkit.Signer(t, jwt.SigningMethodES256, signing))

	replica := func() *verify.Verifier {
		v, err := verify.NewWithKeys(issuer, staticKey{&signing.PublicKey}, verify.WithAudience("orders"),
			verify.WithDPoP(verify.DPoP{PublicURL: api, Replay: cache}))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a, b := replica(), replica()
	proof, err := dpop.NewProof(holder, "GET", api+"/orders", tok, "", now)
	if err != nil {
		t.Fatal(err)
	}
	request := func(proof string) *http.Request {
		r := httptest.NewRequest("GET", "/orders", nil)
		r.Header.Set("Authorization", "DPoP "+tok)
		r.Header.Set("DPoP", proof)
		return r
	}
	if _, err := a.VerifyRequest(request(proof)); err != nil {
		t.Fatalf("replica a: %v", err)
	}
	if _, err := b.VerifyRequest(request(proof)); !errors.Is(err, dpop.ErrInvalidProof) || !strings.Contains(err.Error(), "used before") {
		t.Fatalf("replica b, the same proof: %v", err)
	}
	fresh, _ := dpop.NewProof(holder, "GET", api+"/orders", tok, "", now)
	if _, err := b.VerifyRequest(request(fresh)); err != nil {
		t.Fatalf("replica b, a fresh proof: %v", err)
	}
	// The id expires with the proof.
	p, err := dpop.Check(proof, dpop.Params{Method: "GET", URL: api + "/orders", AccessToken: tok, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ttl, err := cache.rdb.PTTL(ctx, cache.prefix+p.ID).Result()
	if err != nil || ttl <= 0 || ttl > dpop.DefaultMaxAge+dpop.DefaultSkew {
		t.Fatalf("PTTL %v %v", ttl, err)
	}
}
