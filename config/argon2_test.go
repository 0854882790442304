package config_test

import (
	"testing"

	"github.com/tokend/tokend/credential"
)

// The argon2id parameters serve and the CLI hash with come from one place:
// the defaults are credential.DefaultArgon2's, and each variable reaches
// its parameter.
func TestArgon2(t *testing.T) {
	if got, want := mustLoad(t, "").Argon2(), credential.DefaultArgon2(); got != want {
		t.Errorf("defaults: %+v, want %+v", got, want)
	}
	got := mustLoad(t, "", "PASSWORD_HASH_MEMORY=65536", "PASSWORD_HASH_ITERATIONS=3", "PASSWORD_HASH_PARALLELISM=4").Argon2()
	want := credential.DefaultArgon2()
	want.Memory, want.Iterations, want.Parallelism = 65536, 3, 4
	if got != want {
		t.Errorf("set: %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Error(err)
	}
}
