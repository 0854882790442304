package storetest

import (
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/store"
)

// UpdateClient replaces the secret hash, grants and scopes and nothing
// else; an unknown client is ErrNotFound and is not created.
func testUpdateClient(t *testing.T, e *env) {
	orig := store.Client{ID: "svc", SecretHash: []byte("0123456789abcdef0123456789abcdef"), Grants: []string{"client_credentials"},
		Scopes: []string{"read"}, CreatedAt: e.now}
	must(t, e.st.CreateClient(e.ctx, orig))
	upd := store.Client{ID: "svc", SecretHash: []byte("fedcba9876543210fedcba9876543210"), Public: true,
		Grants: []string{"client_credentials", "password"}, Scopes: []string{"read", "write"}, CreatedAt: e.now.Add(-1)}
	must(t, e.st.UpdateClient(e.ctx, upd))
	got, err := e.st.Client(e.ctx, "svc")
	must(t, err)
	if string(got.SecretHash) != string(upd.SecretHash) || strings.Join(got.Grants, " ") != "client_credentials password" ||
		strings.Join(got.Scopes, " ") != "read write" || got.Public || !got.CreatedAt.Equal(e.now) || !got.TokensNotBefore.IsZero() {
		t.Fatalf("after UpdateClient: %+v", got)
	}
	// TokensNotBefore is stored to the millisecond, and replaced.
	upd.TokensNotBefore = e.now.Add(time.Second + 1234567)
	must(t, e.st.UpdateClient(e.ctx, upd))
	if got, err = e.st.Client(e.ctx, "svc"); err != nil || !got.TokensNotBefore.Equal(upd.TokensNotBefore.Truncate(time.Millisecond)) {
		t.Fatalf("TokensNotBefore after UpdateClient: %v, %v; want %v", got.TokensNotBefore, err, upd.TokensNotBefore)
	}
	// Scopes can be emptied.
	upd.Scopes = nil
	must(t, e.st.UpdateClient(e.ctx, upd))
	if got, err = e.st.Client(e.ctx, "svc"); err != nil || got.Scopes != nil {
		t.Fatalf("scopes emptied: %+v, %v", got.Scopes, err)
	}
	wantErr(t, "UpdateClient of an unknown client", e.st.UpdateClient(e.ctx, store.Client{ID: "nobody", Grants: []string{"password"}}), store.ErrNotFound)
	if _, err := e.st.Client(e.ctx, "nobody"); err != store.ErrNotFound {
		t.Fatalf("UpdateClient created a client: %v", err)
	}
	wantErr(t, `UpdateClient("")`, e.st.UpdateClient(e.ctx, store.Client{}), store.ErrNotFound)
}

// testClientPolicy: a client's audiences and its DPoP requirement are
// kept by CreateClient and replaced by UpdateClient.
func testClientPolicy(t *testing.T, e *env) {
	c := store.Client{ID: "spa", Public: true, Grants: []string{"password", "refresh_token"},
		Audiences: []string{"https://api.example", "orders"}, RequireDPoP: true, CreatedAt: e.now}
	must(t, e.st.CreateClient(e.ctx, c))
	plain := store.Client{ID: "plain", Public: true, Grants: []string{"password"}, CreatedAt: e.now}
	must(t, e.st.CreateClient(e.ctx, plain))
	got, err := e.st.Client(e.ctx, "spa")
	must(t, err)
	if strings.Join(got.Audiences, " ") != "https://api.example orders" || !got.RequireDPoP {
		t.Fatalf("created: %+v", got)
	}
	if got, err := e.st.Client(e.ctx, "plain"); err != nil || got.Audiences != nil || got.RequireDPoP {
		t.Fatalf("a client without a policy: %+v, %v", got, err)
	}
	c.Audiences, c.RequireDPoP = []string{"orders"}, false
	must(t, e.st.UpdateClient(e.ctx, c))
	got, err = e.st.Client(e.ctx, "spa")
	must(t, err)
	if strings.Join(got.Audiences, " ") != "orders" || got.RequireDPoP {
		t.Fatalf("updated: %+v", got)
	}
	list, err := e.st.ListClients(e.ctx)
	must(t, err)
	if len(list) != 2 || strings.Join(list[1].Audiences, " ") != "orders" {
		t.Fatalf("ListClients: %+v", list)
	}
}
