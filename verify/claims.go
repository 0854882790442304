package verify

import (
	"errors"
	"fmt"

	"github.com/tokend/tokend/verify/internal/jose"
)

// This file decodes the two JSON objects of an access token: the JOSE
// header and the claims set, by the rules of internal/jose (exact member
// names, the last of a repeated member, one JSON type per claim).

// header is the JOSE header of a token.
type header struct {
	Alg  string
	Kid  string
	Typ  string
	Crit bool // the header has a "crit" member
}

// payload is the JWT claims set as it is decoded.
type payload struct {
	Iss      string
	Sub      string
	Aud      []string
	Exp      jose.NumericDate
	Iat      jose.NumericDate
	Nbf      jose.NumericDate
	Jti      string
	ClientID string
	Scope    string
	Roles    []string
	Sid      string
	Cnf      Confirmation
	Act      *Actor
}

// maxActorDepth bounds the nesting of act claims read: far more links of
// delegation than any deployment makes (tokend bounds its own).
const maxActorDepth = 32

// decodeHeader decodes a JOSE header. alg, kid and typ must be strings.
func decodeHeader(b []byte) (*header, error) {
	r, err := jose.NewObjectReader(b)
	if err != nil {
		return nil, err
	}
	h := &header{}
	for r.Next() {
		switch string(r.Name) {
		case "alg":
			err = jose.String(r.Value, &h.Alg)
		case "kid":
			err = jose.String(r.Value, &h.Kid)
		case "typ":
			err = jose.String(r.Value, &h.Typ)
		case "crit":
			h.Crit = true
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.Name, err)
		}
	}
	return h, r.Err
}

// decodePayload decodes a claims set into p. Claims other than those of
// payload are not looked at (Claims.Decode reads them).
func decodePayload(b []byte, p *payload) error {
	r, err := jose.NewObjectReader(b)
	if err != nil {
		return err
	}
	for r.Next() {
		switch string(r.Name) {
		case "iss":
			err = jose.String(r.Value, &p.Iss)
		case "sub":
			err = jose.String(r.Value, &p.Sub)
		case "aud":
			p.Aud, err = jose.Audience(r.Value)
		case "exp":
			err = p.Exp.Decode(r.Value)
		case "iat":
			err = p.Iat.Decode(r.Value)
		case "nbf":
			err = p.Nbf.Decode(r.Value)
		case "jti":
			err = jose.String(r.Value, &p.Jti)
		case "client_id":
			err = jose.String(r.Value, &p.ClientID)
		case "scope":
			err = jose.String(r.Value, &p.Scope)
		case "roles":
			p.Roles, err = jose.Strings(r.Value)
		case "sid":
			err = jose.String(r.Value, &p.Sid)
		case "cnf":
			p.Cnf, err = decodeConfirmation(r)
		case "act":
			p.Act, err = decodeActor(r, 1)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", r.Name, err)
		}
	}
	return r.Err
}

// decodeConfirmation decodes cnf (RFC 7800 §3.1), of which this verifier
// knows jkt (RFC 9449 §6.1). A cnf without jkt binds the token to a key
// in a way it cannot check (x5t#S256 of mutual TLS, say): refused, rather
// than taken for a bearer token. null counts as absent.
func decodeConfirmation(r *jose.ObjectReader) (Confirmation, error) {
	if jose.IsNull(r.Value) {
		return Confirmation{}, nil
	}
	o, err := r.Object()
	if err != nil {
		return Confirmation{}, err
	}
	var c Confirmation
	for o.Next() {
		if string(o.Name) == "jkt" {
			if err := jose.String(o.Value, &c.JKT); err != nil {
				return Confirmation{}, fmt.Errorf("jkt: %w", err)
			}
		}
	}
	if o.Err != nil {
		return Confirmation{}, o.Err
	}
	if !isThumbprint(c.JKT) {
		return Confirmation{}, errors.New("no SHA-256 JWK thumbprint (jkt): a confirmation method this verifier cannot check")
	}
	return c, nil
}

// isThumbprint: s is a base64url SHA-256 hash (RFC 7638 §3).
func isThumbprint(s string) bool {
	if len(s) != 43 {
		return false
	}
	_, err := jose.Segment(make([]byte, 0, 32), s)
	return err == nil
}

// decodeActor decodes act (RFC 8693 §4.1): an object whose sub names the
// actor, and whose own act, if any, the actor before it. null counts as
// absent.
func decodeActor(r *jose.ObjectReader, depth int) (*Actor, error) {
	if jose.IsNull(r.Value) {
		return nil, nil
	}
	if depth > maxActorDepth {
		return nil, errors.New("delegation chain too long")
	}
	o, err := r.Object()
	if err != nil {
		return nil, err
	}
	a := &Actor{}
	for o.Next() {
		switch string(o.Name) {
		case "sub":
			err = jose.String(o.Value, &a.Subject)
		case "act":
			a.Actor, err = decodeActor(o, depth+1)
		}
		if err != nil {
			return nil, err
		}
	}
	if o.Err != nil {
		return nil, o.Err
	}
	if a.Subject == "" {
		return nil, errors.New("an actor without a subject (sub)")
	}
	return a, nil
}

// Confirmation is the cnf claim of a sender-constrained token (RFC 7800).
type Confirmation struct {
	// JKT is the RFC 7638 thumbprint of the key the token is bound to
	// (DPoP, RFC 9449 §6.1); "" for a bearer token.
	JKT string
}

// Actor is one link of a token's delegation chain (RFC 8693 §4.1): a
// token tokend issued by token exchange names, in act, the service that
// asked for it, acting for the token's subject.
type Actor struct {
	// Subject is the actor (tokend: the client id of the service that
	// exchanged the token).
	Subject string
	// Actor is the actor before this one, when the token exchanged was
	// itself the result of an exchange; nil at the end of the chain.
	Actor *Actor
}
