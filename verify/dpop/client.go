package dpop

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"
)

// NewProof makes a DPoP proof signed by key for a request with method to
// url (its query and fragment are left out of htu), at now. accessToken,
// if not empty, is the access token sent with the request (the proof
// then carries its hash, ath); nonce, if not empty, is the server's
// latest DPoP-Nonce. key is an *ecdsa.PrivateKey on P-256 (ES256), an
// ed25519.PrivateKey (EdDSA), an *rsa.PrivateKey (RS256), or any
// crypto.Signer with such a public key (a key in an HSM, say).
func NewProof(key crypto.Signer, method, url, accessToken, nonce string, now time.Time) (string, error) {
	if key == nil {
		return "", errors.New("dpop: NewProof: nil key")
	}
	pub := key.Public()
	var alg string
	switch pub.(type) {
	case *ecdsa.PublicKey:
		alg = ES256
	case ed25519.PublicKey:
		alg = EdDSA
	case *rsa.PublicKey:
		alg = RS256
	}
	jwk, err := appendJWK(nil, pub)
	if err != nil {
		return "", err
	}
	if i := strings.IndexAny(url, "?#"); i >= 0 {
		url = url[:i]
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	hdr := append(append([]byte(`{"typ":"dpop+jwt","alg":"`+alg+`","jwk":`), jwk...), '}')
	claims := struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		ATH   string `json:"ath,omitempty"`
		Nonce string `json:"nonce,omitempty"`
	}{JTI: b64(jti[:]), HTM: method, HTU: url, IAT: now.Unix(), Nonce: nonce}
	if accessToken != "" {
		claims.ATH = accessTokenHash(accessToken)
	}
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := b64(hdr) + "." + b64(body)
	sig, err := sign(key, alg, []byte(signing))
	if err != nil {
		return "", fmt.Errorf("dpop: signing the proof: %w", err)
	}
	return signing + "." + b64(sig), nil
}

// sign signs a JWS signing input as alg: for ES256 the fixed-size R || S
// of RFC 7518 §3.4, not the ASN.1 that crypto.Signer gives.
func sign(key crypto.Signer, alg string, signing []byte) ([]byte, error) {
	switch alg {
	case EdDSA:
		return key.Sign(rand.Reader, signing, crypto.Hash(0))
	case RS256:
		sum := sha256.Sum256(signing)
		return key.Sign(rand.Reader, sum[:], crypto.SHA256)
	}
	sum := sha256.Sum256(signing)
	der, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) > 0 || rs.R == nil || rs.S == nil ||
		rs.R.Sign() <= 0 || rs.S.Sign() <= 0 || rs.R.BitLen() > 256 || rs.S.BitLen() > 256 {
		return nil, errors.New("the signer's ECDSA signature is malformed")
	}
	out := make([]byte, 64)
	rs.R.FillBytes(out[:32])
	rs.S.FillBytes(out[32:])
	return out, nil
}

// Transport is an http.RoundTripper for a client of DPoP-bound tokens — a
// Go service calling another with a token bound to its key. To each
// request it adds a fresh proof made with Key for the request's method and
// URL and, when Token is set and the request has no Authorization header,
// "Authorization: DPoP <token>"; a request that already carries
// "Authorization: DPoP <token>" gets a proof with that token's hash.
//
// It remembers the last DPoP-Nonce each server (scheme and host) sent,
// puts it in later proofs, and when a server answers a request with a
// nonce challenge — 401 with WWW-Authenticate: DPoP error="use_dpop_nonce"
// from a resource server, 400 {"error":"use_dpop_nonce"} from a token
// endpoint — it sends the request once more with a proof that carries the
// nonce. A request whose body cannot be replayed (no GetBody) is not
// retried; its challenge is returned.
//
// A Transport is safe for concurrent use; set its fields before the first
// request.
type Transport struct {
	// Key is the key the tokens are bound to.
	Key crypto.Signer
	// Token, if not nil, gives the access token for a request that has
	// no Authorization header. Nil: requests go with the Authorization
	// they have, or none (a token request, whose proof binds the tokens
	// it gets).
	Token func(*http.Request) (string, error)
	// Base sends the requests [http.DefaultTransport if nil].
	Base http.RoundTripper
	// Now is the clock for iat [time.Now if nil].
	Now func() time.Time

	mu     sync.Mutex
	nonces map[string]string // scheme://host → the last DPoP-Nonce
}

// maxNonceBody bounds the part of a 400 answer read for its error code.
const maxNonceBody = 4 << 10

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	origin := req.URL.Scheme + "://" + req.URL.Host
	out := req.Clone(req.Context())
	if out.Header.Get("Authorization") == "" && t.Token != nil {
		tok, err := t.Token(req)
		if err != nil {
			closeBody(req)
			return nil, fmt.Errorf("dpop: access token: %w", err)
		}
		out.Header.Set("Authorization", "DPoP "+tok)
	}
	var tok string
	if scheme, rest, _ := strings.Cut(out.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "DPoP") {
		tok = strings.TrimSpace(rest)
	}
	resp, err := t.send(out, origin, tok)
	if err != nil {
		return nil, err
	}
	challenged := t.challenge(resp)
	if !challenged || (req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) {
		return resp, nil
	}
	retry := req.Clone(req.Context())
	retry.Header = out.Header.Clone()
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		retry.Body = body
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxNonceBody))
	resp.Body.Close()
	return t.send(retry, origin, tok)
}

// send adds a proof to req (which it owns) and sends it; it remembers the
// nonce the answer carries.
func (t *Transport) send(req *http.Request, origin, tok string) (*http.Response, error) {
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	u := *req.URL
	u.RawQuery, u.Fragment, u.RawFragment, u.User = "", "", "", nil
	proof, err := NewProof(t.Key, method, u.String(), tok, t.nonce(origin), now())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	req.Header.Set("DPoP", proof)
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if n := resp.Header.Get("DPoP-Nonce"); n != "" {
		t.remember(origin, n)
	}
	return resp, nil
}

// challenge reports whether resp asks for a proof with a nonce (which
// send remembered). The body of a 400 is read for its error code and put
// back.
func (t *Transport) challenge(resp *http.Response) bool {
	if resp.Header.Get("DPoP-Nonce") == "" {
		return false
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		for _, ch := range resp.Header.Values("WWW-Authenticate") {
			if scheme, params, _ := strings.Cut(strings.TrimSpace(ch), " "); strings.EqualFold(scheme, "DPoP") &&
				strings.Contains(params, `error="use_dpop_nonce"`) {
				return true
			}
		}
	case http.StatusBadRequest:
		head, err := io.ReadAll(io.LimitReader(resp.Body, maxNonceBody))
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
		var e struct {
			Error string `json:"error"`
		}
		if err == nil && json.Unmarshal(head, &e) == nil && e.Error == "use_dpop_nonce" {
			return true
		}
	}
	return false
}

func (t *Transport) nonce(origin string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nonces[origin]
}

func (t *Transport) remember(origin, nonce string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.nonces == nil {
		t.nonces = map[string]string{}
	}
	t.nonces[origin] = nonce
}

// closeBody closes a request's body, as a RoundTripper must even when it
// fails before sending.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
