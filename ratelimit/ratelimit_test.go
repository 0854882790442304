package ratelimit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/ratelimit"
)

type limiter interface {
	Attempt(ctx context.Context, account, ip string) (time.Duration, string, error)
	Succeeded(ctx context.Context, account, ip string) error
	Clear(ctx context.Context, account string, ips ...string) error
}

// both runs f against the Redis and the in-memory limiter with the same
// limits.
func both(t *testing.T, limits ratelimit.Limits, f func(t *testing.T, l limiter)) {
	t.Run("redis", func(t *testing.T) {
		rdb := testredis.Client(t)
		prefix := testredis.Prefix(t)
		t.Cleanup(func() { _ = testredis.DeletePrefix(context.Background(), rdb, "rate:"+prefix) })
		f(t, ratelimit.NewRedis(rdb, prefix, limits))
	})
	t.Run("memory", func(t *testing.T) {
		f(t, ratelimit.NewMemory(limits, ratelimit.MemoryOptions{}))
	})
}

func allow(t *testing.T, l limiter, account, ip string) {
	t.Helper()
	wait, which, err := l.Attempt(context.Background(), account, ip)
	if err != nil || wait != 0 || which != "" {
		t.Fatalf("Attempt(%s, %s) = %v, %q, %v; want allowed", account, ip, wait, which, err)
	}
}

func refuse(t *testing.T, l limiter, account, ip, want string, minWait, maxWait time.Duration) {
	t.Helper()
	wait, which, err := l.Attempt(context.Background(), account, ip)
	if err != nil || which != want || wait < minWait || wait > maxWait {
		t.Fatalf("Attempt(%s, %s) = %v, %q, %v; want refused by %s after %v..%v", account, ip, wait, which, err, want, minWait, maxWait)
	}
}

// The account's ceiling: three attempts per hour from addresses it has
// not signed in from, wherever they come from; the fourth waits 20 minutes
// (one attempt every period/N). A correct password does not refill it.
func TestAccountCeiling(t *testing.T) {
	both(t, ratelimit.Limits{PerAccount: ratelimit.Rate{N: 3, Period: time.Hour}}, func(t *testing.T, l limiter) {
		for i := 0; i < 3; i++ {
			allow(t, l, "alice", fmt.Sprintf("192.0.2.%d", i)) // from anywhere
		}
		refuse(t, l, "alice", "198.51.100.7", ratelimit.LimitAccount, 19*time.Minute, 20*time.Minute+time.Second)
		allow(t, l, "bob", "192.0.2.1") // other accounts are not affected
		if err := l.Succeeded(context.Background(), "alice", "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		refuse(t, l, "alice", "198.51.100.8", ratelimit.LimitAccount, time.Minute, 21*time.Minute)
		// ... except from the address alice signed in from: known now.
		for i := 0; i < 10; i++ {
			allow(t, l, "alice", "192.0.2.1")
		}
	})
}

// Per account and address: three failures from one address stop that
// address only; a correct password from it clears its count.
func TestAccountIPLimit(t *testing.T) {
	both(t, ratelimit.Limits{PerAccountIP: ratelimit.Rate{N: 3, Period: time.Hour}}, func(t *testing.T, l limiter) {
		for i := 0; i < 3; i++ {
			allow(t, l, "alice", "203.0.113.9")
		}
		refuse(t, l, "alice", "203.0.113.9", ratelimit.LimitAccountIP, 19*time.Minute, 20*time.Minute+time.Second)
		allow(t, l, "alice", "192.0.2.1") // the owner, elsewhere
		allow(t, l, "bob", "203.0.113.9") // another account from the attacker's address
		if err := l.Succeeded(context.Background(), "alice", "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
		refuse(t, l, "alice", "203.0.113.9", ratelimit.LimitAccountIP, time.Minute, 21*time.Minute)
		if err := l.Succeeded(context.Background(), "alice", "203.0.113.9"); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			allow(t, l, "alice", "203.0.113.9")
		}
	})
}

// The lockout-proof property, counted on both sides (no timing): an
// attacker with 2,000 addresses gets exactly the ceiling's guesses for the
// account, and meanwhile its owner still signs in from the address they
// used before, as often as the per-address limit allows.
func TestNoLockoutAndBoundedGuesses(t *testing.T) {
	limits := ratelimit.Limits{
		PerIP:        ratelimit.Rate{N: 100, Period: time.Minute},
		PerAccountIP: ratelimit.Rate{N: 10, Period: 15 * time.Minute},
		PerAccount:   ratelimit.Rate{N: 50, Period: 24 * time.Hour},
	}
	both(t, limits, func(t *testing.T, l limiter) {
		ctx := context.Background()
		const home = "192.0.2.10"
		allow(t, l, "alice", home)               // the owner signed in before (from an unknown
		must(t, l.Succeeded(ctx, "alice", home)) // address then: one of the ceiling's 50)

		guesses, refusedByCeiling := 0, 0
		for i := 0; i < 2000; i++ {
			ip := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
			wait, which, err := l.Attempt(ctx, "alice", ip)
			must(t, err)
			switch {
			case wait == 0:
				guesses++
			case which == ratelimit.LimitAccount:
				refusedByCeiling++
			default:
				t.Fatalf("attempt %d refused by %q", i, which)
			}
			if i%200 == 0 {
				// The owner, from home, in the middle of the attack.
				allow(t, l, "alice", home)
				must(t, l.Succeeded(ctx, "alice", home))
			}
		}
		if guesses != 49 || refusedByCeiling != 1951 {
			t.Fatalf("attacker: %d guesses, %d refused; want exactly what is left of the ceiling, 49, and 1951", guesses, refusedByCeiling)
		}
		// Mistyping at home is still limited per address, not locked out.
		for i := 0; i < 10; i++ {
			allow(t, l, "alice", home)
		}
		refuse(t, l, "alice", home, ratelimit.LimitAccountIP, time.Second, 2*time.Minute)
		// A new address of the owner's is an unknown one while the ceiling
		// is spent: the documented price.
		refuse(t, l, "alice", "198.51.100.1", ratelimit.LimitAccount, time.Second, 30*time.Minute)
		allow(t, l, "bob", "10.0.0.1") // other accounts are untouched
	})
}

// Over simulated days the ceiling admits at most its burst plus its
// refill: guesses in any 24 hours ≤ 2 × N per day, N per day sustained.
func TestCeilingBoundOverDays(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	l := ratelimit.NewMemory(ratelimit.Limits{
		PerAccountIP: ratelimit.Rate{N: 10, Period: 15 * time.Minute},
		PerAccount:   ratelimit.Rate{N: 100, Period: 24 * time.Hour},
	}, ratelimit.MemoryOptions{Now: func() time.Time { return now }})
	perDay := make([]int, 10)
	ip := 0
	for step := 0; step < 10*24*60; step++ { // one minute at a time, ten days
		for k := 0; k < 2; k++ { // 2 fresh addresses a minute
			ip++
			if wait, _, _ := l.Attempt(context.Background(), "alice", fmt.Sprintf("10.0.%d.%d", ip>>8&255, ip&255)); wait == 0 {
				perDay[step/(24*60)]++
			}
		}
		now = now.Add(time.Minute)
	}
	for day, n := range perDay {
		if n > 200 || (day > 0 && n > 101) {
			t.Fatalf("day %d: %d guesses (all days %v); want ≤ 200 on the first, ≤ 101 after", day, n, perDay)
		}
	}
	if perDay[0] < 190 || perDay[5] < 99 {
		t.Fatalf("the ceiling admits less than it says: %v", perDay)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Every attempt counts against its address; IPv6 addresses by /64; an
// attempt refused for its address does not count against the account.
func TestIPLimit(t *testing.T) {
	limits := ratelimit.Limits{PerIP: ratelimit.Rate{N: 2, Period: time.Hour}, PerAccount: ratelimit.Rate{N: 3, Period: time.Hour}}
	both(t, limits, func(t *testing.T, l limiter) {
		allow(t, l, "x", "192.0.2.1")
		allow(t, l, "y", "192.0.2.1")
		refuse(t, l, "x", "192.0.2.1", ratelimit.LimitIP, 29*time.Minute, 30*time.Minute+time.Second)
		refuse(t, l, "z", "192.0.2.1", ratelimit.LimitIP, time.Minute, 31*time.Minute)
		allow(t, l, "x", "192.0.2.2")        // x's second attempt: the refused ones did not count
		allow(t, l, "x", "::ffff:192.0.2.3") // x's third (an IPv4-mapped address is the IPv4 one)
		refuse(t, l, "x", "192.0.2.4", ratelimit.LimitAccount, time.Minute, 21*time.Minute)

		allow(t, l, "v6a", "2001:db8:1:2::1")
		allow(t, l, "v6b", "2001:db8:1:2:ffff::9")                                             // same /64
		refuse(t, l, "v6c", "2001:db8:1:2:aaaa::1", ratelimit.LimitIP, time.Minute, time.Hour) // same /64
		allow(t, l, "v6c", "2001:db8:1:3::1")                                                  // the next /64
	})
}

func TestDisabled(t *testing.T) {
	both(t, ratelimit.Limits{}, func(t *testing.T, l limiter) {
		for i := 0; i < 50; i++ {
			allow(t, l, "alice", "192.0.2.1")
		}
		if err := l.Succeeded(context.Background(), "alice", "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
	})
}

// Concurrent attempts cannot slip past the limit: of 40 at once, exactly N
// go ahead.
func TestConcurrentAttempts(t *testing.T) {
	both(t, ratelimit.Limits{PerAccount: ratelimit.Rate{N: 5, Period: time.Hour}}, func(t *testing.T, l limiter) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		allowed := 0
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				wait, _, err := l.Attempt(context.Background(), "alice", "192.0.2.1")
				if err != nil {
					t.Error(err)
					return
				}
				if wait == 0 {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if allowed != 5 {
			t.Fatalf("%d of 40 concurrent attempts went ahead, want 5", allowed)
		}
	})
}

// The in-memory limiter refills with time and keeps a bounded number of
// buckets.
func TestMemoryRefillAndBound(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	l := ratelimit.NewMemory(ratelimit.Limits{
		PerAccount: ratelimit.Rate{N: 3, Period: time.Hour}, PerIP: ratelimit.Rate{N: 1000, Period: time.Minute},
	}, ratelimit.MemoryOptions{MaxKeys: 100, Now: clock})
	for i := 0; i < 3; i++ {
		allow(t, l, "alice", "192.0.2.1")
	}
	refuse(t, l, "alice", "192.0.2.1", ratelimit.LimitAccount, 20*time.Minute, 20*time.Minute)
	advance(20 * time.Minute)
	allow(t, l, "alice", "192.0.2.1")
	refuse(t, l, "alice", "192.0.2.1", ratelimit.LimitAccount, 20*time.Minute, 20*time.Minute)

	for i := 0; i < 10000; i++ {
		_, _, _ = l.Attempt(context.Background(), fmt.Sprintf("user%d", i), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	if n := l.Len(); n > 200 {
		t.Fatalf("%d buckets after 10000 distinct accounts and addresses, want at most 2 × 100", n)
	}
}

// Clear lets an owner the limits hold back sign in again: the account's
// ceiling, and its bucket at the addresses named; another account's
// budget, and an address's limit over all accounts, are untouched. The
// account's name is compared without case, as everywhere.
func TestClear(t *testing.T) {
	both(t, ratelimit.Limits{
		PerAccount: ratelimit.Rate{N: 2, Period: time.Hour}, PerAccountIP: ratelimit.Rate{N: 2, Period: time.Hour},
		PerIP: ratelimit.Rate{N: 100, Period: time.Hour},
	}, func(t *testing.T, l limiter) {
		ctx := context.Background()
		allow(t, l, "alice", "203.0.113.1")
		allow(t, l, "alice", "203.0.113.1")
		refuse(t, l, "alice", "203.0.113.1", ratelimit.LimitAccountIP, time.Minute, time.Hour)
		refuse(t, l, "ALICE", "198.51.100.1", ratelimit.LimitAccount, time.Minute, time.Hour) // the ceiling is spent
		allow(t, l, "bob", "198.51.100.1")
		allow(t, l, "bob", "198.51.100.2")
		must(t, l.Clear(ctx, "Alice"))
		allow(t, l, "alice", "198.51.100.1") // the ceiling is full again
		refuse(t, l, "alice", "203.0.113.1", ratelimit.LimitAccountIP, time.Minute, time.Hour)
		must(t, l.Clear(ctx, "alice", "203.0.113.1"))
		allow(t, l, "alice", "203.0.113.1")
		refuse(t, l, "bob", "198.51.100.3", ratelimit.LimitAccount, time.Minute, time.Hour) // not bob's
	})
}
