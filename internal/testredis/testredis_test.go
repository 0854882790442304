package testredis

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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

// A paused server answers nothing; what was sent meanwhile runs when it
// resumes.
func TestServerPause(t *testing.T) {
	ctx := context.Background()
	srv := StartServer(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, ReadTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil { // a pooled connection, as a busy client has
		t.Fatal(err)
	}
	srv.Pause()
	if err := rdb.Set(ctx, "queued", "v", 0).Err(); err == nil {
		t.Fatal("a paused server answered")
	}
	srv.Resume()
	deadline := time.Now().Add(5 * time.Second)
	for rdb.Get(ctx, "queued").Val() != "v" {
		if time.Now().After(deadline) {
			t.Fatal("the SET sent while paused did not run after Resume")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A planned Sentinel failover promotes the replica, with the data, and
// makes the old master its replica.
func TestSentinelFailover(t *testing.T) {
	ctx := context.Background()
	master := StartServer(t)
	replica := StartReplica(t, master)
	m := master.client()
	defer m.Close()
	if err := m.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := m.Do(ctx, "WAIT", 1, 5000).Err(); err != nil {
		t.Fatal(err)
	}
	sentinel := StartSentinel(t, "tm", master)
	start := time.Now()
	from, to := sentinel.Failover("tm")
	t.Logf("failover in %v", time.Since(start))
	if from != master.Addr || to != replica.Addr {
		t.Fatalf("failover %s → %s, want %s → %s", from, to, master.Addr, replica.Addr)
	}
	r := replica.client()
	defer r.Close()
	if v := r.Get(ctx, "k").Val(); v != "v" {
		t.Fatalf("the new master lost the data: %q", v)
	}
	if err := r.Set(ctx, "k2", "v", 0).Err(); err != nil {
		t.Fatalf("the new master refuses writes: %v", err)
	}
	if u := SentinelURL("tm", sentinel); u != "redis+sentinel://"+sentinel.Addr+"/0?master_name=tm" {
		t.Fatal(u)
	}
}
