// Package ratelimit is tokend's brute-force protection for password
// sign-ins: a limit per account and a limit per client IP address, each a
// GCRA / token bucket of N attempts per period (a burst of N, then one
// attempt every period/N). It implements server.LoginLimiter twice:
//
//   - Redis keeps the buckets in Redis with github.com/go-redis/redis_rate
//     (one Lua script per check, single-key, so valid in Cluster), shared by
//     every replica;
//   - Memory keeps them in the process with golang.org/x/time/rate, for the
//     embedded store, with a bound on the number of buckets.
//
// What is counted (docs/design.md, "Hardening"): every attempt counts
// against its IP address; every attempt counts against its account when it
// starts, and a correct password clears the account's bucket, so in effect
// the account limit counts failed attempts. Accounts are keyed by the
// lower-cased username whether or not it exists, so unknown and existing
// usernames are limited identically; the key is a hash, so no username is
// stored. IPv6 addresses are limited per /64, the block one host usually
// controls.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"time"
)

// Rate is N attempts per Period; N = 0 disables the limit.
type Rate struct {
	N      int
	Period time.Duration
}

func (r Rate) enabled() bool { return r.N > 0 && r.Period > 0 }

// Limits are the two limits of password sign-ins.
type Limits struct {
	PerAccount Rate
	PerIP      Rate
}

// Enabled reports whether either limit is on.
func (l Limits) Enabled() bool { return l.PerAccount.enabled() || l.PerIP.enabled() }

// Which limit refused an attempt.
const (
	LimitIP      = "ip"
	LimitAccount = "account"
)

// accountKey is the bucket name of an account: a hash, so that usernames
// are not stored and every key has the same length.
func accountKey(account string) string {
	sum := sha256.Sum256([]byte(account))
	return hex.EncodeToString(sum[:16])
}

// ipKey is the bucket name of a client address: IPv4 as is, IPv6 by its
// /64 network. Anything unparsable is used as is, truncated.
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		if len(ip) > 64 {
			ip = ip[:64]
		}
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// roundUp makes a refusal's wait at least a millisecond, so a caller can
// tell it from "allowed".
func roundUp(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return time.Millisecond
	}
	return d
}

// limiter is the method set server.LoginLimiter asks for.
type limiter interface {
	Attempt(ctx context.Context, account, ip string) (time.Duration, string, error)
	Succeeded(ctx context.Context, account string) error
}

var (
	_ limiter = (*Redis)(nil)
	_ limiter = (*Memory)(nil)
)
