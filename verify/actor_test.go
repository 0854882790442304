package verify_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/tokend/tokend/verify"
)

// The actor chain of a token issued by token exchange (RFC 8693 §4.1),
// and the options that require or refuse one.
func TestActorChain(t *testing.T) {
	f := newFakeIssuer(t, verify.ES256)
	ctx := context.Background()
	direct := f.mint(t, defaultClaims)
	c := defaultClaims
	c.Actors = []string{"billing", "orders"} // orders exchanged first, then billing
	delegated := f.mint(t, c)

	v := newVerifier(t, f)
	got, err := v.Verify(ctx, delegated)
	if err != nil {
		t.Fatal(err)
	}
	if got.Actor == nil || got.Actor.Subject != "billing" || got.Actor.Actor == nil || got.Actor.Actor.Subject != "orders" || got.Actor.Actor.Actor != nil {
		t.Fatalf("chain %+v", got.Actor)
	}
	if got, err := v.Verify(ctx, direct); err != nil || got.Actor != nil {
		t.Fatalf("direct: %v %+v", err, got)
	}

	req := newVerifier(t, f, verify.RequireDelegation())
	if _, err := req.Verify(ctx, delegated); err != nil {
		t.Fatalf("RequireDelegation, delegated: %v", err)
	}
	if _, err := req.Verify(ctx, direct); !errors.Is(err, verify.ErrInvalid) || !strings.Contains(err.Error(), "only delegated") {
		t.Fatalf("RequireDelegation, direct: %v", err)
	}
	ref := newVerifier(t, f, verify.RefuseDelegation())
	if _, err := ref.Verify(ctx, direct); err != nil {
		t.Fatalf("RefuseDelegation, direct: %v", err)
	}
	if _, err := ref.Verify(ctx, delegated); !errors.Is(err, verify.ErrInvalid) || !strings.Contains(err.Error(), "does not accept delegated") {
		t.Fatalf("RefuseDelegation, delegated: %v", err)
	}
	if _, err := verify.New(ctx, f.url, verify.WithAudience("orders"), verify.RequireDelegation(), verify.RefuseDelegation()); err == nil {
		t.Fatal("both options accepted")
	}

	// Malformed chains and bindings are refused.
	k := f.set.Load().Signing()
	deep := map[string]any{"sub": "s0"}
	for i := 1; i <= 32; i++ {
		deep = map[string]any{"sub": "s", "act": deep}
	}
	for name, claims := range map[string]map[string]any{
		"act a string":            with(f.goodClaims(), "act", "orders"),
		"act without sub":         with(f.goodClaims(), "act", map[string]any{"client_id": "orders"}),
		"act with an empty sub":   with(f.goodClaims(), "act", map[string]any{"sub": ""}),
		"a nested act without":    with(f.goodClaims(), "act", map[string]any{"sub": "a", "act": map[string]any{}}),
		"act 33 deep":             with(f.goodClaims(), "act", deep),
		"cnf a string":            with(f.goodClaims(), "cnf", "x"),
		"cnf without jkt (mTLS)":  with(f.goodClaims(), "cnf", map[string]any{"x5t#S256": "abc"}),
		"cnf with a short jkt":    with(f.goodClaims(), "cnf", map[string]any{"jkt": "abc"}),
		"cnf with a jkt not b64u": with(f.goodClaims(), "cnf", map[string]any{"jkt": strings.Repeat("+", 43)}),
	} {
		if _, err := newVerifier(t, f, verify.AllowBoundTokens()).Verify(ctx, forge(t, k, f.goodHeader(k), claims)); !errors.Is(err, verify.ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// null counts as absent.
	if got, err := v.Verify(ctx, forge(t, k, f.goodHeader(k), with(f.goodClaims(), "act", nil))); err != nil || got.Actor != nil {
		t.Fatalf("no act: %v", err)
	}
	if _, err := v.Verify(ctx, forgeRaw(t, k, f.goodHeader(k), `{"iss":"`+f.url+`","sub":"u","aud":"orders","exp":`+strconv.FormatInt(f.clock.Now().Unix()+60, 10)+
		`,"iat":`+strconv.FormatInt(f.clock.Now().Unix(), 10)+`,"jti":"j","client_id":"web","cnf":null,"act":null}`)); err != nil {
		t.Fatalf("cnf and act null: %v", err)
	}
}
