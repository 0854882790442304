// Package ratelimit is tokend's brute-force protection for password
// sign-ins, designed so that guessing is bounded without letting anyone
// lock an account's owner out (docs/security.md, "Password guessing").
// Each limit is a GCRA / token bucket of N attempts per period (a burst of
// N, then one attempt every period/N). An attempt for account from
// address ip passes, in this order (rules.attempt, the one place the order
// is written):
//
//  1. PerIP: every attempt from the address, whatever the account;
//  2. PerAccountIP: attempts for the account from this address;
//  3. PerAccount, the account's ceiling: attempts for the account from
//     addresses it has not signed in from in the last KnownFor. An address
//     the account has signed in from (a "known" address) skips the
//     ceiling, so an attacker who spends the ceiling from many addresses
//     does not stop the owner signing in from home.
//
// A refused attempt counts against no later limit. A correct password
// clears the account's bucket for that address and marks the address
// known; it does not refill the ceiling, so the ceiling bounds guesses per
// day whatever the owner does. An administrator can (Clear: the ceiling,
// and the account's bucket at given addresses — `tokend users unlock`).
//
// It implements server.LoginLimiter twice, over the same rules:
//
//   - Redis keeps the buckets in Redis with github.com/go-redis/redis_rate
//     (one Lua script per check, single-key, so valid in Cluster), shared by
//     every replica;
//   - Memory keeps them in the process with golang.org/x/time/rate, for the
//     embedded store, with a bound on the number of buckets.
//
// Accounts are keyed by the lower-cased username whether or not it
// exists, so unknown and existing usernames are limited identically; the
// key is a hash, so no username is stored. IPv6 addresses are limited per
// /64, the block one host usually controls.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
	"time"
)

// Rate is N attempts per Period; N = 0 disables the limit.
type Rate struct {
	N      int
	Period time.Duration
}

func (r Rate) enabled() bool { return r.N > 0 && r.Period > 0 }

// Limits are the limits of password sign-ins (see the package doc).
type Limits struct {
	PerIP        Rate // every attempt from one address
	PerAccountIP Rate // attempts for one account from one address
	PerAccount   Rate // the account's ceiling: attempts from addresses it has not signed in from
	// KnownFor is how long an address stays known to an account after a
	// successful sign-in from it [DefaultKnownFor].
	KnownFor time.Duration
}

// DefaultKnownFor is Limits.KnownFor's default.
const DefaultKnownFor = 30 * 24 * time.Hour

func (l Limits) knownFor() time.Duration {
	if l.KnownFor > 0 {
		return l.KnownFor
	}
	return DefaultKnownFor
}

// Enabled reports whether any limit is on.
func (l Limits) Enabled() bool {
	return l.PerAccount.enabled() || l.PerAccountIP.enabled() || l.PerIP.enabled()
}

// Which limit refused an attempt.
const (
	LimitIP        = "ip"
	LimitAccountIP = "account_ip"
	LimitAccount   = "account"
)

// accountKey is the bucket name of an account: a hash of its lower-cased
// name, so that "Alice" and "alice" share a budget, usernames are not
// stored, and every key has the same length.
func accountKey(account string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(account)))
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

// pairKey names one account's bucket for one address.
func pairKey(account, ip string) string { return accountKey(account) + ":" + ipKey(ip) }

// backend keeps buckets and known addresses (in Redis or in memory).
type backend interface {
	// take spends one attempt of the bucket kind/key under r: 0 when
	// allowed (and counted), else how long until one is (nothing spent).
	take(ctx context.Context, kind, key string, r Rate) (time.Duration, error)
	// reset empties the bucket kind/key.
	reset(ctx context.Context, kind, key string) error
	// known reports whether key was remembered and has not expired.
	known(ctx context.Context, key string) (bool, error)
	// remember marks key known for ttl.
	remember(ctx context.Context, key string, ttl time.Duration) error
}

// rules are the limits applied in their one order (the package doc).
type rules struct {
	limits Limits
	b      backend
}

func (r rules) attempt(ctx context.Context, account, ip string) (time.Duration, string, error) {
	type check struct {
		limit, kind, key string
		rate             Rate
	}
	checks := []check{
		{LimitIP, "ip", ipKey(ip), r.limits.PerIP},
		{LimitAccountIP, "account_ip", pairKey(account, ip), r.limits.PerAccountIP},
		{LimitAccount, "account", accountKey(account), r.limits.PerAccount},
	}
	for _, c := range checks {
		if !c.rate.enabled() {
			continue
		}
		if c.limit == LimitAccount {
			known, err := r.b.known(ctx, pairKey(account, ip))
			if err != nil {
				return 0, "", err
			}
			if known {
				continue // the owner's address: the ceiling does not apply
			}
		}
		d, err := r.b.take(ctx, c.kind, c.key, c.rate)
		if err != nil {
			return 0, "", err
		}
		if d > 0 {
			return roundUp(d), c.limit, nil
		}
	}
	return 0, "", nil
}

func (r rules) succeeded(ctx context.Context, account, ip string) error {
	if r.limits.PerAccountIP.enabled() {
		if err := r.b.reset(ctx, "account_ip", pairKey(account, ip)); err != nil {
			return err
		}
	}
	if r.limits.PerAccount.enabled() {
		return r.b.remember(ctx, pairKey(account, ip), r.limits.knownFor())
	}
	return nil
}

// clear empties the account's ceiling and its bucket at each of ips.
func (r rules) clear(ctx context.Context, account string, ips ...string) error {
	if err := r.b.reset(ctx, "account", accountKey(account)); err != nil {
		return err
	}
	for _, ip := range ips {
		if err := r.b.reset(ctx, "account_ip", pairKey(account, ip)); err != nil {
			return err
		}
	}
	return nil
}

// limiter is the method set server.LoginLimiter asks for, and Clear.
type limiter interface {
	Attempt(ctx context.Context, account, ip string) (time.Duration, string, error)
	Succeeded(ctx context.Context, account, ip string) error
	Clear(ctx context.Context, account string, ips ...string) error
}

var (
	_ limiter = (*Redis)(nil)
	_ limiter = (*Memory)(nil)
)
