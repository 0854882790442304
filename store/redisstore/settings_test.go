package redisstore

import (
	"context"
	"fmt"
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
