package testredis

import (
	"context"
	"testing"
)

func TestPrefixCleanup(t *testing.T) {
	ctx := context.Background()
	rdb := Client(t)
	var prefix string
	t.Run("inner", func(t *testing.T) {
		prefix = Prefix(t)
		for _, k := range []string{"a", "b", "{tag}:c"} {
			if err := rdb.Set(ctx, prefix+k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	if n := len(rdb.Keys(ctx, prefix+"*").Val()); n != 0 {
		t.Fatalf("%d keys left under %s", n, prefix)
	}
}

// TestServerRestart: a server with AOF keeps its data across a crash and a
// graceful stop, on the same address.
func TestServerRestart(t *testing.T) {
	ctx := context.Background()
	srv := StartServer(t, "--appendonly", "yes", "--appendfsync", "always")
	addr := srv.Addr
	set := func(k string) {
		rdb := srv.client()
		defer rdb.Close()
		if err := rdb.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	has := func(k string) bool {
		rdb := srv.client()
		defer rdb.Close()
		return rdb.Exists(ctx, k).Val() == 1
	}
	set("before-kill")
	srv.Kill()
	if srv.Running() {
		t.Fatal("running after Kill")
	}
	srv.Start()
	if srv.Addr != addr || !has("before-kill") {
		t.Fatal("data or address lost across a crash")
	}
	set("before-stop")
	srv.Stop()
	srv.Stop() // idempotent
	srv.Start()
	srv.Start() // idempotent
	if !has("before-stop") {
		t.Fatal("data lost across a stop")
	}
}

func TestCluster(t *testing.T) {
	nodes := StartCluster(t, 2)
	if len(nodes) != 2 || ClusterURL(nodes) != "redis+cluster://"+nodes[0].Addr+","+nodes[1].Addr {
		t.Fatalf("cluster %v", ClusterURL(nodes))
	}
}
