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
		!strings.Contains(l, "starts anyway because REDIS_ALLOW_EVICTION=true") {
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

// The rules on given settings, as serve logs them: the clock warning
// (which a real Redis on this host cannot provoke), the version and
// policy refusals and the policy's override, memory, persistence and
// listpack.
func TestJudgeRedis(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	good := redisstore.NodeSettings{Addr: "a:1", Version: "7.0.15", Mode: "cluster", MaxMemoryPolicy: "noeviction",
		AOF: true, Config: true, AppendFsync: "everysec", ListpackValue: 256, ListpackEntries: 512}
	with := func(f func(*redisstore.NodeSettings)) redisstore.NodeSettings {
		n := good
		n.Addr = "b:2"
		f(&n)
		return n
	}
	for _, tc := range []struct {
		node     redisstore.NodeSettings
		allow    bool
		wantErr  bool
		wantLogs []string
	}{
		{good, false, false, nil},
		{withSkew(good, 29*time.Second), false, false, nil},
		{withSkew(good, 31*time.Second), false, false, []string{"level=WARN", "clock differs", "by 31s", "skew=31s", "node=a:1"}},
		{withSkew(good, -45*time.Second), false, false, []string{"level=WARN", "skew=-45s"}},
		{with(func(n *redisstore.NodeSettings) { n.Version = "6.0.16" }), false, true, nil},
		{with(func(n *redisstore.NodeSettings) { n.Version = "6.2.0" }), false, false, nil},
		{with(func(n *redisstore.NodeSettings) { n.MaxMemoryPolicy = "allkeys-lfu" }), false, true, nil},
		{with(func(n *redisstore.NodeSettings) { n.MaxMemoryPolicy = "allkeys-lfu" }), true, false, []string{"level=ERROR", "starts anyway because REDIS_ALLOW_EVICTION=true"}},
		{with(func(n *redisstore.NodeSettings) { n.MaxMemory, n.UsedMemory = 100, 101 }), false, false, []string{"level=ERROR", "out of memory"}},
		{with(func(n *redisstore.NodeSettings) { n.ListpackValue = 64 }), false, false, []string{"level=WARN", "hash-max-listpack-value is 64"}},
		{with(func(n *redisstore.NodeSettings) { n.ListpackEntries = 50 }), false, false, []string{"level=WARN", "hash-max-listpack-entries is 50, below MAX_SESSIONS_PER_USER (100)"}},
		{with(func(n *redisstore.NodeSettings) {
			n.Config, n.ListpackValue, n.ListpackEntries, n.AppendFsync = false, 0, 0, ""
		}), false, false, nil},
		{with(func(n *redisstore.NodeSettings) { n.AppendFsync = "no" }), false, false, []string{"level=WARN", "appendfsync no"}},
		{with(func(n *redisstore.NodeSettings) { n.AOF = false }), false, false, []string{"level=WARN", "keeps nothing on disk", "--appendonly yes"}},
		{with(func(n *redisstore.NodeSettings) { n.AOF, n.Save = false, "3600 1" }), false, false, []string{"level=WARN", `RDB snapshots alone (save \"3600 1\")`}},
		{with(func(n *redisstore.NodeSettings) { n.AOF, n.Config = false, false }), false, false, []string{"level=WARN", "cannot be read"}},
		{with(func(n *redisstore.NodeSettings) { n.PersistenceErr = "rdb_last_bgsave_status:err" }), false, false, []string{"level=ERROR", "last save failed"}},
	} {
		buf.Reset()
		err := logFindings(context.Background(), log, judgeRedis([]redisstore.NodeSettings{good, tc.node}, config.Config{RedisAllowEviction: tc.allow, MaxSessionsPerUser: 100}))
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
