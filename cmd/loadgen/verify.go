package main

import (
	"bytes"
	"context"

	"github.com/tokend/tokend/verify"
)

// verifyScenario measures local verification of access tokens with the
// verify package, as a resource server does: one Verifier (JWKS fetched
// once from tokend, then cached), each virtual client verifying its own
// token again and again — after the first, from the verified-token cache —
// no network per verification.
var verifyScenario = scenario{name: "verify", what: "local verification with verify (in-process, ES256, tokens seen before)", inproc: true,
	prepare: func(ctx context.Context, r *rig, c *conn, id int) (step, error) {
		v, err := r.sharedVerifier(ctx)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		at, _, err := signIn(ctx, c, id, &buf)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			_, err := v.Verify(ctx, at)
			return err
		}, nil
	}}

// sharedVerifier makes one Verifier for all virtual clients, as one
// resource server process would have.
func (r *rig) sharedVerifier(ctx context.Context) (*verify.Verifier, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.verifier == nil {
		v, err := verify.New(ctx, r.base, verify.WithAudience(benchAudience))
		if err != nil {
			return nil, err
		}
		r.verifier = v
	}
	return r.verifier, nil
}

// benchAudience is the audience of the tokend under test (JWT_AUDIENCE)
// and the one the shared Verifier requires, as a resource server would.
const benchAudience = "loadgen"
