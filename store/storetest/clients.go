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
