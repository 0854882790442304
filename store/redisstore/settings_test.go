package redisstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/testredis"
)

// Settings reads each node's policy, memory and clock: one node, and every
// node of a Cluster (where one evicting node is enough to be reported).
func TestSettings(t *testing.T) {
	ctx := context.Background()
	srv := testredis.StartServer(t, "--maxmemory-policy", "volatile-lru", "--maxmemory", "100mb")
	st, err := Open(ctx, srv.URL(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	nodes, err := st.Settings(ctx)
	if err != nil || len(nodes) != 1 {
		t.Fatalf("Settings: %v, %v", nodes, err)
	}
	n := nodes[0]
	if n.MaxMemoryPolicy != "volatile-lru" || n.MaxMemory != 100<<20 || n.UsedMemory <= 0 || n.OutOfMemory() || n.ClockSkew.Abs() > 2*time.Second {
		t.Fatalf("node settings %+v", n)
	}
	// testredis runs without persistence; Redis's defaults otherwise.
	if !VersionSupported(n.Version) || n.Mode != "standalone" || n.AOF || n.PersistenceErr != "" || !n.Config ||
		n.Save != "" || n.AppendFsync != "everysec" || n.ListpackValue != 64 || n.ListpackEntries != 512 {
		t.Fatalf("node settings %+v", n)
	}
	aof := testredis.StartServer(t, "--appendonly", "yes", "--appendfsync", "always", "--save", "3600 1",
		"--hash-max-listpack-value", "256", "--hash-max-listpack-entries", "512")
	ast, err := Open(ctx, aof.URL(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ast.Close()
	if nodes, err := ast.Settings(ctx); err != nil || !nodes[0].AOF || nodes[0].Save != "3600 1" || nodes[0].AppendFsync != "always" ||
		nodes[0].ListpackValue != 256 || nodes[0].ListpackEntries != 512 {
		t.Fatalf("Settings with AOF and RDB: %+v, %v", nodes, err)
	}
	if full, err := st.OutOfMemory(ctx); full || err != nil {
		t.Fatalf("OutOfMemory = %v, %v", full, err)
	}
	if !(NodeSettings{MaxMemory: 10, UsedMemory: 11}).OutOfMemory() || (NodeSettings{UsedMemory: 11}).OutOfMemory() {
		t.Fatal("OutOfMemory: used above a limit, or no limit at all")
	}

	cluster := testredis.StartCluster(t, 3)
	// One node evicts.
	c := redis.NewClient(&redis.Options{Addr: cluster[1].Addr})
	defer c.Close()
	if err := c.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	cst, err := Open(ctx, testredis.ClusterURL(cluster), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cst.Close()
	nodes, err = cst.Settings(ctx)
	if err != nil || len(nodes) != len(cluster) {
		t.Fatalf("cluster Settings: %+v, %v", nodes, err)
	}
	policies := map[string]string{}
	for _, n := range nodes {
		policies[n.Addr] = n.MaxMemoryPolicy
	}
	if policies[cluster[1].Addr] != "allkeys-lru" || policies[cluster[0].Addr] != NoEviction {
		t.Fatalf("cluster policies %v", fmt.Sprint(policies))
	}
}

func TestVersionSupported(t *testing.T) {
	for v, want := range map[string]bool{
		"6.2.0": true, "6.2.14": true, "7.0.15": true, "7.4": true, "10.0.0": true,
		"6.0.20": false, "6.1.9": false, "5.0.14": false, "": false, "6": false,
	} {
		if got := VersionSupported(v); got != want {
			t.Errorf("VersionSupported(%q) = %v", v, got)
		}
	}
}

// Probe passes for a user allowed the prefix and fails, naming Redis's
// refusal, for one limited to another prefix, one without scripting, and
// on a read-only replica; it leaves no key behind.
func TestProbe(t *testing.T) {
	ctx := context.Background()
	srv := testredis.StartServer(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	for _, acl := range [][]string{
		{"ACL", "SETUSER", "ours", "on", ">pw", "~tokend:*", "+@all"},
		{"ACL", "SETUSER", "elsewhere", "on", ">pw", "~other:*", "+@all"},
		{"ACL", "SETUSER", "noscripts", "on", ">pw", "~tokend:*", "+@all", "-@scripting"},
	} {
		args := make([]any, len(acl))
		for i, a := range acl {
			args[i] = a
		}
		if err := admin.Do(ctx, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	probe := func(url string) error {
		st, err := Open(ctx, url, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		return st.Probe(ctx)
	}
	if err := probe("redis://ours:pw@" + srv.Addr + "/0"); err != nil {
		t.Errorf("a user allowed tokend:*: %v", err)
	}
	for user, want := range map[string]string{"elsewhere": "NOPERM", "noscripts": "NOPERM"} {
		if err := probe("redis://" + user + ":pw@" + srv.Addr + "/0"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("user %s: Probe = %v, want %s", user, err, want)
		}
	}
	replica := testredis.StartReplica(t, srv)
	if err := probe(replica.URL()); err == nil || !strings.Contains(err.Error(), "READONLY") {
		t.Errorf("on a replica: Probe = %v", err)
	}
	if keys, err := admin.Keys(ctx, "*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys left: %v %v", keys, err)
	}
}
