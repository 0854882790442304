package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/redisinfo"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/store/redisstore"
)

func privateRedisEnv(srv *testredis.Server, extra ...string) []string {
	return append([]string{
		"REDIS_URL=" + srv.URL(), "PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1", "LOG_FORMAT=text",
	}, extra...)
}

// An evicting Redis stops start-up, naming the fix; REDIS_ALLOW_EVICTION
// starts anyway and says so at error level.
func TestServeRefusesEvictingRedis(t *testing.T) {
	for _, policy := range []string{"allkeys-lru", "volatile-lru", "allkeys-random"} {
		srv := testredis.StartServer(t, "--maxmemory-policy", policy)
		out, err := run(t, privateRedisEnv(srv, "HTTP_ADDR=127.0.0.1:0"), "", "serve")
		if err == nil || !strings.Contains(err.Error(), `maxmemory-policy is "`+policy+`", not "noeviction"`) ||
			!strings.Contains(err.Error(), "REDIS_ALLOW_EVICTION=true") {
			t.Fatalf("%s: serve: %v\n%s", policy, err, out)
		}
	}
	srv := testredis.StartServer(t, "--maxmemory-policy", "allkeys-lru")
	_, logs := serveFor(t, privateRedisEnv(srv, "REDIS_ALLOW_EVICTION=true"))
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, `maxmemory-policy is \"allkeys-lru\"`) ||
		!strings.Contains(l, "starting anyway because REDIS_ALLOW_EVICTION=true") {
		t.Fatalf("no loud log line:\n%s", l)
	}
}

// Under noeviction a full Redis refuses writes: sign-ins get 503 with
// Retry-After, and /readyz says out_of_memory; once memory is available
// again, both recover.
func TestServeRedisOutOfMemory(t *testing.T) {
	srv := testredis.StartServer(t, "--maxmemory-policy", "noeviction")
	env := privateRedisEnv(srv)
	if _, err := run(t, env, "s3cret-password", "users", "create", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, env, "", "clients", "create", "web", "--public"); err != nil {
		t.Fatal(err)
	}
	base, logs := serveFor(t, env)
	signIn := url.Values{"grant_type": {"password"}, "client_id": {"web"}, "username": {"alice"}, "password": {"s3cret-password"}}
	if status, m := postForm(t, base+"/oauth/token", signIn); status != 200 {
		t.Fatalf("sign in: %d %v", status, m)
	}
	readyz := func() (int, map[string]any) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if status, m := readyz(); status != 200 {
		t.Fatalf("readyz: %d %v", status, m)
	}

	// Fill Redis up to a maxmemory just above what it uses now.
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	info, err := redisinfo.Read(ctx, rdb, "memory")
	if err != nil {
		t.Fatal(err)
	}
	used, ok := info.Int("used_memory")
	if !ok {
		t.Fatalf("INFO memory has no used_memory: %v", info)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rdb.ConfigSet(ctx, "maxmemory", fmt.Sprint(used+512<<10)).Err())
	// Big values first, then ever smaller ones: a refused write's own
	// request buffer is freed, so only small writes leave Redis over
	// the limit.
	n := 0
	for _, size := range []int{16 << 10, 1 << 10, 64, 8} {
		filled := false
		for i := 0; i < 100000 && !filled; i++ {
			n++
			err := rdb.Set(ctx, fmt.Sprintf("filler:%d", n), strings.Repeat("x", size), 0).Err()
			filled = err != nil && strings.HasPrefix(err.Error(), "OOM")
		}
		if !filled {
			t.Fatalf("Redis never refused a write of %d bytes", size)
		}
	}

	status, m := postForm(t, base+"/oauth/token", signIn)
	if status != 503 || m["error"] != "temporarily_unavailable" {
		t.Fatalf("sign in with Redis full: %d %v", status, m)
	}
	if status, m := readyz(); status != 503 || m["store"] != "out_of_memory" {
		t.Fatalf("readyz with Redis full: %d %v", status, m)
	}
	if !strings.Contains(logs.String(), "OOM") {
		t.Errorf("the log does not say why the sign-in failed:\n%s", logs.String())
	}

	must(rdb.ConfigSet(ctx, "maxmemory", "0").Err())
	if status, m := readyz(); status != 200 {
		t.Fatalf("readyz after freeing memory: %d %v", status, m)
	}
	if status, m := postForm(t, base+"/oauth/token", signIn); status != 200 {
		t.Fatalf("sign in after freeing memory: %d %v", status, m)
	}
}

// The rules on given settings: the clock warning (which a real Redis on
// this host cannot provoke), the policy error and its override, the
// listpack warning.
func TestJudgeRedis(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ok := redisstore.NodeSettings{Addr: "a:1", MaxMemoryPolicy: "noeviction"}
	for _, tc := range []struct {
		node     redisstore.NodeSettings
		allow    bool
		wantErr  bool
		wantLogs []string
	}{
		{ok, false, false, nil},
		{withSkew(ok, 29*time.Second), false, false, nil},
		{withSkew(ok, 31*time.Second), false, false, []string{"level=WARN", "clock differs", "skew=31s"}},
		{withSkew(ok, -45*time.Second), false, false, []string{"level=WARN", "skew=-45s"}},
		{redisstore.NodeSettings{MaxMemoryPolicy: "allkeys-lfu"}, false, true, nil},
		{redisstore.NodeSettings{MaxMemoryPolicy: "allkeys-lfu"}, true, false, []string{"level=ERROR", "REDIS_ALLOW_EVICTION=true"}},
		{redisstore.NodeSettings{MaxMemoryPolicy: "noeviction", MaxMemory: 100, UsedMemory: 101}, false, false, []string{"level=ERROR", "out of memory"}},
		{redisstore.NodeSettings{MaxMemoryPolicy: "noeviction", ListpackValue: 64}, false, false, []string{"level=WARN", "hash-max-listpack-value is 64"}},
		{redisstore.NodeSettings{MaxMemoryPolicy: "noeviction", ListpackValue: redisstore.ListpackValue}, false, false, nil},
	} {
		buf.Reset()
		err := judgeRedis([]redisstore.NodeSettings{ok, tc.node}, config.Config{RedisAllowEviction: tc.allow}, log)
		if (err != nil) != tc.wantErr {
			t.Errorf("%+v: error %v", tc.node, err)
		}
		for _, w := range tc.wantLogs {
			if !strings.Contains(buf.String(), w) {
				t.Errorf("%+v: log lacks %q:\n%s", tc.node, w, buf.String())
			}
		}
		if tc.wantLogs == nil && buf.Len() > 0 {
			t.Errorf("%+v: unexpected log:\n%s", tc.node, buf.String())
		}
	}
}

func withSkew(n redisstore.NodeSettings, d time.Duration) redisstore.NodeSettings {
	n.ClockSkew = d
	return n
}
