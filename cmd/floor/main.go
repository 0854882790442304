// Command floor is the least a token server built like tokend can spend on
// a request: net/http, golang-jwt's ES256 (or EdDSA) signature, and for a
// refresh one Redis round trip running a minimal atomic rotation script.
// It has no logging, no metrics, no rate limits, no client store, no reuse
// window and no theft detection. make bench runs it beside tokend and the
// go-oauth2 baseline (docs/performance.md, "The floor"): what it costs per
// request, relative to go-oauth2, bounds from below the ratio any server on
// this architecture can reach.
//
// It speaks the baseline's protocol (../shared/baseline): client
// bench-client / bench-secret with client_secret_basic, user test / test,
// flags -addr and -token, plus -redis-url.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"log"
	"net/http"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
)

// rotate moves a refresh token's subject from KEYS[1] to KEYS[2], once.
var rotate = redis.NewScript(`
local sub = redis.call('GETDEL', KEYS[1])
if not sub then return false end
redis.call('SET', KEYS[2], sub, 'EX', 3600)
return sub
`)

type server struct {
	rdb    *redis.Client
	method jwt.SigningMethod // nil with -token none
	key    any
	header string // the encoded JOSE header
	prefix string // of the Redis keys
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9097", "listen address")
	tok := flag.String("token", "jwt-es256", "jwt-es256|jwt-eddsa|none")
	redisURL := flag.String("redis-url", "redis://127.0.0.1:6379/0", "Redis for refresh tokens")
	flag.Parse()

	s := &server{prefix: "floor:"}
	if err := s.setAlg(*tok); err != nil {
		log.Fatal(err)
	}
	opt, err := redis.ParseURL(*redisURL)
	if err != nil {
		log.Fatal(err)
	}
	s.rdb = redis.NewClient(opt)
	if err := rotate.Load(context.Background(), s.rdb).Err(); err != nil {
		log.Fatal(err)
	}
	log.Printf("floor server (%s) on http://%s/oauth/token", *tok, *addr)
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(s.token)))
}

// setAlg makes a signing key for the -token flag's algorithm.
func (s *server) setAlg(tok string) error {
	switch tok {
	case "jwt-es256":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		s.method, s.key = jwt.SigningMethodES256, k
	case "jwt-eddsa":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return err
		}
		s.method, s.key = jwt.SigningMethodEdDSA, k
	case "none": // net/http and Redis alone, to split the floor into its parts
	default:
		return fmt.Errorf("unknown -token %q", tok)
	}
	if s.method != nil {
		s.header = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"` + s.method.Alg() + `","kid":"k1","typ":"at+jwt"}`))
	}
	return nil
}

func (s *server) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if r.Method != http.MethodPost || r.URL.Path != "/oauth/token" || !ok ||
		subtle.ConstantTimeCompare([]byte(id), []byte("bench-client"))&
			subtle.ConstantTimeCompare([]byte(secret), []byte("bench-secret")) != 1 {
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	sub, refresh := "", ""
	switch r.PostForm.Get("grant_type") {
	case "client_credentials":
		sub = id
	case "password":
		if r.PostForm.Get("username") != "test" || r.PostForm.Get("password") != "test" {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		sub, refresh = "test", newToken()
		if err := s.rdb.Set(ctx, s.prefix+refresh, sub, time.Hour).Err(); err != nil {
			http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
			return
		}
	case "refresh_token":
		refresh = newToken()
		v, err := rotate.EvalSha(ctx, s.rdb, []string{s.prefix + r.PostForm.Get("refresh_token"), s.prefix + refresh}).Text()
		if err == redis.Nil {
			http.Error(w, `{"error":"invalid_grant"}`, http.StatusBadRequest)
			return
		}
		if err != nil {
			http.Error(w, `{"error":"temporarily_unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		sub = v
	default:
		http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
		return
	}
	b := make([]byte, 0, 768)
	b = append(b, `{"access_token":"`...)
	var err error
	if b, err = s.appendJWT(b, r.Host, sub, id); err != nil {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	b = append(b, `","token_type":"Bearer","expires_in":900`...)
	if refresh != "" {
		b = append(b, `,"refresh_token":"`...)
		b = append(b, refresh...)
		b = append(b, '"')
	}
	b = append(b, `,"scope":"read"}`...)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Cache-Control"] = []string{"no-store"}
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.Write(b)
}

// appendJWT appends a signed access token with the claims tokend issues,
// built without reflection; with -token none, an unsigned placeholder.
func (s *server) appendJWT(b []byte, host, sub, client string) ([]byte, error) {
	if s.method == nil {
		return append(b, "none"...), nil
	}
	now := time.Now().Unix()
	c := make([]byte, 0, 256)
	c = append(c, `{"iss":"http://`...)
	c = append(c, host...)
	c = append(c, `","sub":"`...)
	c = append(c, sub...)
	c = append(c, `","aud":"http://`...)
	c = append(c, host...)
	c = append(c, `","client_id":"`...)
	c = append(c, client...)
	c = append(c, `","iat":`...)
	c = strconv.AppendInt(c, now, 10)
	c = append(c, `,"exp":`...)
	c = strconv.AppendInt(c, now+900, 10)
	c = append(c, `,"jti":"`...)
	c = append(c, newToken()...)
	c = append(c, `","scope":"read"}`...)
	start := len(b)
	b = append(b, s.header...)
	b = append(b, '.')
	b = base64.RawURLEncoding.AppendEncode(b, c)
	sig, err := s.method.Sign(string(b[start:]), s.key)
	if err != nil {
		return nil, err
	}
	b = append(b, '.')
	return base64.RawURLEncoding.AppendEncode(b, sig), nil
}

func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
