package faultproxy_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/faultproxy"
	"github.com/tokend/tokend/internal/testredis"
)

// A reply the rule loses was still applied by Redis: Cut breaks the
// connection, Hold makes the client time out; everything else passes, and
// the client works again once the rule is lifted.
func TestProxyLosesChosenReplies(t *testing.T) {
	srv := testredis.StartServer(t)
	p := faultproxy.Start(t, srv.Addr)
	ctx := context.Background()
	direct := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer direct.Close()
	// No retries, so each lost reply is one INCR applied once.
	rdb := redis.NewClient(&redis.Options{Addr: p.Addr, MaxRetries: -1, ReadTimeout: 300 * time.Millisecond})
	defer rdb.Close()

	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set through the proxy: %v", err)
	}
	for _, action := range []faultproxy.Action{faultproxy.Cut, faultproxy.Hold} {
		p.SetRule(faultproxy.Commands(action, "incr"))
		if err := rdb.Incr(ctx, "n").Err(); err == nil {
			t.Fatalf("%v: INCR answered through the proxy", action)
		}
		if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "v" { // GET passes
			t.Fatalf("%v: GET through the proxy: %q %v", action, v, err)
		}
		p.PassAll()
	}
	if n, err := direct.Get(ctx, "n").Int(); err != nil || n != 2 {
		t.Fatalf("Redis applied %d of the 2 INCRs whose replies were lost (%v)", n, err)
	}
	if n, err := rdb.Incr(ctx, "n").Result(); err != nil || n != 3 {
		t.Fatalf("INCR after PassAll: %d %v", n, err)
	}

	// A fraction: about half of 200 replies, the same ones for one seed.
	p.SetRule(faultproxy.Fraction(0.5, 7, faultproxy.Cut, faultproxy.Commands(faultproxy.Cut, "INCR")))
	failed := 0
	for i := 0; i < 200; i++ {
		if rdb.Incr(ctx, "m").Err() != nil {
			failed++
		}
	}
	p.PassAll()
	byCmd, total := p.Lost()
	if n, _ := direct.Get(ctx, "m").Int(); n != 200 || failed < 50 || failed > 150 || byCmd["INCR"] != 2+failed || total != byCmd["INCR"] {
		t.Fatalf("fraction 0.5: %d of 200 failed, Redis counted %d, proxy lost %v", failed, n, byCmd)
	}
}
