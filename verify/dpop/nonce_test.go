package dpop_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/tokend/tokend/verify/dpop"
)

func TestNonces(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	const bucket = time.Minute
	a, err := dpop.NewNonces([][]byte{k1}, bucket)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := dpop.NewNonces([][]byte{k1}, bucket) // another replica
	now := time.Unix(1767225600, 0)
	n := a.Current(now)
	if len(n) != 32 || b.Current(now) != n || a.Current(now.Add(time.Second)) != n {
		t.Fatalf("replicas with one key make one nonce per bucket: %q %q", n, b.Current(now))
	}
	if a.Current(now.Add(bucket)) == n {
		t.Fatal("the next bucket's nonce is the same")
	}
	// Accepted in its bucket, the next (a nonce just before the turn) and
	// the one before (a replica whose clock is ahead made it).
	for _, at := range []time.Time{now, now.Add(bucket), now.Add(2*bucket - time.Nanosecond), now.Add(-bucket)} {
		if err := b.Check(n, at); err != nil {
			t.Errorf("at %v: %v", at.Sub(now), err)
		}
	}
	for _, c := range []struct {
		name, nonce string
		at          time.Time
		reason      string
	}{
		{"none", "", now, "must carry the server's nonce"},
		{"two buckets old", n, now.Add(2 * bucket), "expired"},
		{"two buckets ahead", n, now.Add(-2 * bucket), "expired"},
		{"forged", n[:31] + string("AB"[boolInt(n[31] == 'A')]), now, "not one this server issued"},
		{"too short", n[:30], now, "not one this server issued"},
		{"not base64url", n[:31] + "=", now, "not one this server issued"},
		{"another server's", mustNonces(t, k2, bucket).Current(now), now, "not one this server issued"},
	} {
		err := a.Check(c.nonce, c.at)
		wantRefusal(t, err, dpop.ErrUseNonce, c.reason)
	}

	// Key rotation: the new key first makes nonces; the old one still
	// checks them.
	rotated, err := dpop.NewNonces([][]byte{k2, k1}, bucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := rotated.Check(n, now); err != nil {
		t.Fatalf("old key's nonce after rotation: %v", err)
	}
	if rotated.Current(now) == n || a.Check(rotated.Current(now), now) == nil {
		t.Fatal("rotated nonces are made with the old key")
	}

	// Check fits Params.Nonce, and Check passes its refusal through.
	es := key(t, "ES256", "a")
	p := params()
	p.Nonce = a.Check
	_, err = dpop.Check(es.sign(t, es.header(), goodClaims()), p)
	wantRefusal(t, err, dpop.ErrUseNonce, "must carry the server's nonce")
	p.Now = now
	claims := with(goodClaims(), "nonce", n, "iat", now.Unix())
	if _, err := dpop.Check(es.sign(t, es.header(), claims), p); err != nil {
		t.Fatal(err)
	}

	if _, err := dpop.NewNonces(nil, bucket); err == nil {
		t.Error("no key")
	}
	if _, err := dpop.NewNonces([][]byte{k1[:15]}, bucket); err == nil {
		t.Error("a 15-byte key")
	}
	d, err := dpop.NewNonces([][]byte{k1}, 0)
	if err != nil || d.Check(d.Current(now), now.Add(dpop.DefaultNonceBucket)) != nil || d.Check(d.Current(now), now.Add(3*dpop.DefaultNonceBucket)) == nil {
		t.Errorf("default bucket: %v", err)
	}
	if !errors.Is(a.Check("", now), dpop.ErrUseNonce) {
		t.Error("errors.Is")
	}
}

func mustNonces(t *testing.T, k []byte, bucket time.Duration) *dpop.Nonces {
	n, err := dpop.NewNonces([][]byte{k}, bucket)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
