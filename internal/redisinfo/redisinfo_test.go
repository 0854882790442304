package redisinfo_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/redisinfo"
	"github.com/tokend/tokend/internal/testredis"
)

func TestParse(t *testing.T) {
	info := redisinfo.Parse("# Memory\r\nused_memory:1048576\r\nmaxmemory_policy:noeviction\r\n\r\n# CPU\r\nused_cpu_sys:1.5\r\nweird:a:b\r\n")
	if n, ok := info.Int("used_memory"); !ok || n != 1048576 {
		t.Errorf("used_memory = %d, %v", n, ok)
	}
	if info["maxmemory_policy"] != "noeviction" {
		t.Errorf("maxmemory_policy = %q", info["maxmemory_policy"])
	}
	if f, ok := info.Float("used_cpu_sys"); !ok || f != 1.5 {
		t.Errorf("used_cpu_sys = %v, %v", f, ok)
	}
	if info["weird"] != "a:b" {
		t.Errorf("a value keeps its colons: %q", info["weird"])
	}
	if _, ok := info["# Memory"]; ok {
		t.Error("a section header became a field")
	}
	if _, ok := info.Int("absent"); ok {
		t.Error("an absent field reads as a number")
	}
	if _, ok := info.Int("maxmemory_policy"); ok {
		t.Error("a word reads as a number")
	}
}

// Against a real server: the commands this test runs are counted, and the
// server's CPU moves forward.
func TestAgainstRedis(t *testing.T) {
	srv := testredis.StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	cpu0, err := redisinfo.CPUSeconds(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	for range 2000 {
		if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.Get(ctx, "k").Err(); err != nil {
		t.Fatal(err)
	}
	st, err := redisinfo.CommandStats(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	if st["set"].Calls != 2000 || st["get"].Calls != 1 {
		t.Errorf("set %d, get %d calls; want 2000, 1", st["set"].Calls, st["get"].Calls)
	}
	if st["set"].Usec <= 0 {
		t.Errorf("set took %v µs in all", st["set"].Usec)
	}
	if _, ok := st["config|resetstat"]; !ok {
		t.Errorf("subcommands are named cmd|sub: %v", st)
	}
	cpu1, err := redisinfo.CPUSeconds(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	if cpu1 <= cpu0 {
		t.Errorf("CPU seconds %v then %v after 2,001 commands", cpu0, cpu1)
	}
	mem, err := redisinfo.Read(ctx, rdb, "memory")
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := mem.Int("used_memory"); !ok || n <= 0 {
		t.Errorf("used_memory = %d, %v", n, ok)
	}
}
