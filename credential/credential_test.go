package credential

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

// fast are cheap parameters for tests (8 KiB, one pass).
var fast = Argon2Params{Memory: 8, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

func TestDefaultArgon2(t *testing.T) {
	p := DefaultArgon2()
	if p != (Argon2Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}) {
		t.Fatalf("DefaultArgon2() = %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := NewHasher(fast, 1).Params(); got != fast {
		t.Fatalf("Params() = %+v", got)
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Argon2Params{
		{Memory: 8, Iterations: 0, Parallelism: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 8, Iterations: 1, Parallelism: 0, SaltLen: 16, KeyLen: 32},
		{Memory: 15, Iterations: 1, Parallelism: 2, SaltLen: 16, KeyLen: 32},
		{Memory: MaxMemory + 1, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 8, Iterations: MaxIterations + 1, Parallelism: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 8, Iterations: 1, Parallelism: 1, SaltLen: 7, KeyLen: 32},
		{Memory: 8, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 3},
		{Memory: 8, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: MaxKeyLen + 1},
		{Memory: 8, Iterations: 1, Parallelism: 1, SaltLen: MaxSaltLen + 1, KeyLen: 32},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want error", p)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("NewHasher with invalid params did not panic")
			}
		}()
		NewHasher(Argon2Params{}, 1)
	}()
}

func TestHashVerifyRoundTrip(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(fast, 2)
	for _, pw := range []string{"", "correct horse battery staple", "pässwörd ✓", strings.Repeat("x", 1000)} {
		enc, err := h.Hash(ctx, pw)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(enc, "$argon2id$v=19$m=8,t=1,p=1$") {
			t.Fatalf("Hash = %q", enc)
		}
		ok, err := h.Verify(ctx, pw, enc)
		if err != nil || !ok {
			t.Fatalf("Verify(%q) = %v, %v; want true", pw, ok, err)
		}
		ok, err = h.Verify(ctx, pw+"x", enc)
		if err != nil || ok {
			t.Fatalf("Verify(wrong) = %v, %v; want false", ok, err)
		}
		if h.NeedsRehash(enc) {
			t.Error("NeedsRehash of own hash = true")
		}
	}
	a, _ := h.Hash(ctx, "same")
	b, _ := h.Hash(ctx, "same")
	if a == b {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

// A hash made elsewhere (RFC 9106 parameters computed independently with
// argon2.IDKey) verifies: the parameters come from the string.
func TestVerifyUsesEncodedParams(t *testing.T) {
	ctx := context.Background()
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("pw"), salt, 3, 64, 2, 24)
	enc := fmt.Sprintf("$argon2id$v=19$m=64,t=3,p=2$%s$%s",
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))

	h := NewHasher(fast, 1)
	ok, err := h.Verify(ctx, "pw", enc)
	if err != nil || !ok {
		t.Fatalf("Verify = %v, %v; want true", ok, err)
	}
	if !h.NeedsRehash(enc) {
		t.Error("NeedsRehash with other params = false")
	}
	// Changing any parameter changes the result.
	for _, mod := range []string{"m=72,t=3,p=2", "m=64,t=2,p=2", "m=64,t=3,p=1"} {
		alt := strings.Replace(enc, "m=64,t=3,p=2", mod, 1)
		if ok, err := h.Verify(ctx, "pw", alt); err != nil || ok {
			t.Errorf("Verify with %s = %v, %v; want false, nil", mod, ok, err)
		}
	}
}

func TestVerifyMalformed(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(fast, 1)
	good, _ := h.Hash(ctx, "pw")
	parts := strings.Split(good, "$")
	salt, hash := parts[4], parts[5]
	cases := map[string]string{
		"empty":         "",
		"garbage":       "not a hash",
		"dollars":       "$$$$$",
		"argon2i":       "$argon2i$v=19$m=8,t=1,p=1$" + salt + "$" + hash,
		"bcrypt":        "$2a$10$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
		"version16":     "$argon2id$v=16$m=8,t=1,p=1$" + salt + "$" + hash,
		"no version":    "$argon2id$m=8,t=1,p=1$" + salt + "$" + hash,
		"param order":   "$argon2id$v=19$t=1,m=8,p=1$" + salt + "$" + hash,
		"two params":    "$argon2id$v=19$m=8,t=1$" + salt + "$" + hash,
		"neg param":     "$argon2id$v=19$m=-8,t=1,p=1$" + salt + "$" + hash,
		"plus param":    "$argon2id$v=19$m=+8,t=1,p=1$" + salt + "$" + hash,
		"t=0":           "$argon2id$v=19$m=8,t=0,p=1$" + salt + "$" + hash,
		"p=0":           "$argon2id$v=19$m=8,t=1,p=0$" + salt + "$" + hash,
		"p=256":         "$argon2id$v=19$m=8192,t=1,p=256$" + salt + "$" + hash,
		"m too small":   "$argon2id$v=19$m=7,t=1,p=1$" + salt + "$" + hash,
		"m huge":        "$argon2id$v=19$m=4294967295,t=1,p=1$" + salt + "$" + hash,
		"m overflow":    "$argon2id$v=19$m=4294967296,t=1,p=1$" + salt + "$" + hash,
		"t huge":        "$argon2id$v=19$m=8,t=4294967295,p=1$" + salt + "$" + hash,
		"padded salt":   "$argon2id$v=19$m=8,t=1,p=1$" + salt + "==$" + hash,
		"bad salt":      "$argon2id$v=19$m=8,t=1,p=1$!!!!$" + hash,
		"short salt":    "$argon2id$v=19$m=8,t=1,p=1$AAAA$" + hash,
		"empty hash":    "$argon2id$v=19$m=8,t=1,p=1$" + salt + "$",
		"short hash":    "$argon2id$v=19$m=8,t=1,p=1$" + salt + "$AAA",
		"urlsafe hash":  "$argon2id$v=19$m=8,t=1,p=1$" + salt + "$" + strings.Repeat("_", 43),
		"extra field":   good + "$x",
		"newline":       "$argon2id$v=19$m=8,t=1,p=1$" + salt[:4] + "\n" + salt[4:] + "$" + hash,
		"leading space": " " + good,
	}
	for name, enc := range cases {
		ok, err := h.Verify(ctx, "pw", enc)
		if ok || !errors.Is(err, ErrMalformedHash) {
			t.Errorf("%s: Verify(%q) = %v, %v; want false, ErrMalformedHash", name, enc, ok, err)
		}
		if !h.NeedsRehash(enc) {
			t.Errorf("%s: NeedsRehash = false", name)
		}
	}
}

// Tampering with a well-formed hash makes verification fail, not panic.
func TestVerifyTampered(t *testing.T) {
	ctx := context.Background()
	h := NewHasher(fast, 1)
	good, _ := h.Hash(ctx, "pw")
	for i := len("$argon2id$v=19$m=8,t=1,p=1$"); i < len(good); i++ {
		for _, c := range []byte{'A', 'z', '+', '/', '$', '0'} {
			if good[i] == c {
				continue
			}
			bad := good[:i] + string(c) + good[i+1:]
			if ok, _ := h.Verify(ctx, "pw", bad); ok {
				t.Fatalf("tampered hash %q verified", bad)
			}
		}
	}
}

func FuzzVerify(f *testing.F) {
	h := NewHasher(fast, 1)
	good, _ := h.Hash(context.Background(), "pw")
	f.Add(good)
	f.Add("$argon2id$v=19$m=8,t=1,p=1$$")
	f.Fuzz(func(t *testing.T, enc string) {
		_, _ = h.Verify(context.Background(), "pw", enc)
	})
}

func TestVerifyDummy(t *testing.T) {
	h := NewHasher(fast, 1)
	var calls atomic.Int32
	orig := h.kdf
	h.kdf = func(pw, salt []byte, it, m uint32, p uint8, k uint32) []byte {
		calls.Add(1)
		return orig(pw, salt, it, m, p, k)
	}
	h.VerifyDummy(context.Background(), "whatever")
	if calls.Load() != 1 {
		t.Fatalf("VerifyDummy ran argon2 %d times, want 1", calls.Load())
	}
	if !strings.HasPrefix(h.dummy, "$argon2id$v=19$m=8,t=1,p=1$") {
		t.Fatalf("dummy hash %q not made with the hasher's params", h.dummy)
	}
	// Cancelled context: returns without computing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.VerifyDummy(ctx, "x")
	if calls.Load() != 1 {
		t.Fatal("VerifyDummy computed with a cancelled context")
	}
}

// The semaphore bounds the number of simultaneous argon2 computations.
func TestConcurrencyLimit(t *testing.T) {
	const limit, workers = 3, 24
	h := NewHasher(fast, limit)
	var cur, peak atomic.Int32
	orig := h.kdf
	h.kdf = func(pw, salt []byte, it, m uint32, p uint8, k uint32) []byte {
		n := cur.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond) // make overlaps likely
		defer cur.Add(-1)
		return orig(pw, salt, it, m, p, k)
	}
	enc, _ := h.Hash(context.Background(), "pw")
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				if _, err := h.Hash(context.Background(), "pw"); err != nil {
					t.Error(err)
				}
			} else if ok, err := h.Verify(context.Background(), "pw", enc); !ok || err != nil {
				t.Error("Verify failed", ok, err)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > limit {
		t.Fatalf("peak concurrency %d > limit %d", p, limit)
	} else if p < 2 {
		t.Fatalf("peak concurrency %d: the test did not exercise concurrency", p)
	}
	t.Logf("peak concurrency %d (limit %d)", peak.Load(), limit)
}

func TestDefaultConcurrency(t *testing.T) {
	h := NewHasher(fast, 0)
	if cap(h.sem) < 1 {
		t.Fatalf("cap = %d", cap(h.sem))
	}
}

// A caller waiting for a slot gives up when its context ends.
func TestContextCancelWhileWaiting(t *testing.T) {
	h := NewHasher(fast, 1)
	enc, _ := h.Hash(context.Background(), "pw")
	entered, unblock := make(chan struct{}), make(chan struct{})
	orig := h.kdf
	var once sync.Once
	h.kdf = func(pw, salt []byte, it, m uint32, p uint8, k uint32) []byte {
		once.Do(func() { close(entered); <-unblock })
		return orig(pw, salt, it, m, p, k)
	}
	done := make(chan error, 1)
	go func() { _, err := h.Hash(context.Background(), "holder"); done <- err }()
	<-entered // the only slot is now held

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 2)
	go func() { _, err := h.Hash(ctx, "pw"); errc <- err }()
	go func() { _, err := h.Verify(ctx, "pw", enc); errc <- err }()
	time.Sleep(10 * time.Millisecond) // let both block on the semaphore
	cancel()
	for range 2 {
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("waiter did not give up after cancel")
		}
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer dcancel()
	if _, err := h.Hash(dctx, "pw"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}

	close(unblock)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The slot is free again.
	if ok, err := h.Verify(context.Background(), "pw", enc); !ok || err != nil {
		t.Fatalf("Verify after release = %v, %v", ok, err)
	}
}

func TestClientSecret(t *testing.T) {
	s := NewClientSecret()
	if !strings.HasPrefix(s, "cs_") || len(s) != 3+43 {
		t.Fatalf("NewClientSecret() = %q", s)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s[3:])
	if err != nil || len(raw) != 32 {
		t.Fatalf("secret body: %d bytes, %v", len(raw), err)
	}
	if s == NewClientSecret() {
		t.Fatal("two secrets are equal")
	}
	h := HashClientSecret(s)
	if len(h) != 32 {
		t.Fatalf("hash length %d", len(h))
	}
	if !VerifyClientSecret(s, h) {
		t.Fatal("VerifyClientSecret(s, hash(s)) = false")
	}
	for _, bad := range []string{"", s[:len(s)-1], s + "x", NewClientSecret()} {
		if VerifyClientSecret(bad, h) {
			t.Errorf("VerifyClientSecret(%q) = true", bad)
		}
	}
	if VerifyClientSecret(s, h[:31]) || VerifyClientSecret(s, nil) {
		t.Error("VerifyClientSecret with short hash = true")
	}
}

func BenchmarkHash(b *testing.B) {
	h := NewHasher(DefaultArgon2(), 0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	h := NewHasher(DefaultArgon2(), 0)
	ctx := context.Background()
	enc, _ := h.Hash(ctx, "correct horse battery staple")
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := h.Verify(ctx, "correct horse battery staple", enc); !ok {
			b.Fatal("verify failed")
		}
	}
}

// BenchmarkHashParallel shows throughput with the default concurrency limit.
func BenchmarkHashParallel(b *testing.B) {
	h := NewHasher(DefaultArgon2(), 0)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := h.Hash(ctx, "correct horse battery staple"); err != nil {
				b.Error(err)
			}
		}
	})
}

func BenchmarkVerifyClientSecret(b *testing.B) {
	s := NewClientSecret()
	h := HashClientSecret(s)
	b.ReportAllocs()
	for b.Loop() {
		if !VerifyClientSecret(s, h) {
			b.Fatal("verify failed")
		}
	}
}

// An operator's client secret must survive HTTP Basic unencoded: long
// enough, and only unreserved characters; tokend's own secrets pass.
func TestClientSecretProblem(t *testing.T) {
	for _, ok := range []string{NewClientSecret(), strings.Repeat("0123456789abcdef", 4), strings.Repeat("a", MinClientSecretChars)} {
		if p := ClientSecretProblem(ok); p != "" {
			t.Errorf("%q: %s", ok, p)
		}
	}
	for _, bad := range []string{
		"", strings.Repeat("a", MinClientSecretChars-1),
		"Xz3+9QkT2bHc/1LwVn8eR5yU0aDfGjKlMpNqOsTuVwY=", // openssl rand -base64 32
		strings.Repeat("a", 50) + " ", strings.Repeat("a", 50) + "%2B",
	} {
		if p := ClientSecretProblem(bad); !strings.Contains(p, "openssl rand -hex 32") {
			t.Errorf("%q accepted (or refused without the remedy): %q", bad, p)
		}
	}
}
