package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/redisinfo"
)

// NoEviction is the only maxmemory-policy under which Redis never deletes
// tokend's keys on its own: users, clients and the per-user session
// indexes have no TTL (or a long one), and an evicting policy drops them
// when memory runs short — users vanish, "log out everywhere" misses
// sessions. Under noeviction a full Redis refuses writes instead, which
// tokend answers with 503 and reports at /readyz (docs/operations.md).
const NoEviction = "noeviction"

// ListpackValue is the hash-max-listpack-value tokend's Redis should have
// (Redis's default is 64). A user's sessions are one hash; while every
// record in it is at most this many bytes, Redis keeps it in its compact
// listpack encoding, which docs/performance.md's memory figures assume. A
// session record with a browser's User-Agent takes 80 to 130 bytes, so
// the default turns every user's sessions into a hash table of several
// times the memory. Nothing else changes: a larger record (a long scope,
// an uncommon User-Agent) makes only its own user's hash a hash table.
const ListpackValue = 256

// NodeSettings are one Redis node's settings that tokend depends on.
type NodeSettings struct {
	Addr            string // the node ("" for a single node)
	MaxMemoryPolicy string // maxmemory-policy
	MaxMemory       int64  // maxmemory in bytes; 0 = no limit
	UsedMemory      int64  // used_memory minus mem_not_counted_for_evict: what Redis compares with maxmemory
	// ListpackValue is hash-max-listpack-value, read with CONFIG GET;
	// 0 where CONFIG is not allowed (as on many managed services).
	ListpackValue int64
	ClockSkew     time.Duration // the node's TIME minus this process's clock (at the round trip's midpoint)
}

// OutOfMemory reports whether the node refuses writes for lack of memory
// (under noeviction).
func (n NodeSettings) OutOfMemory() bool { return n.MaxMemory > 0 && n.UsedMemory > n.MaxMemory }

// Settings reads the settings of every node tokend writes to — each shard
// (master and replicas) of a Cluster, else the one server — with INFO
// memory and TIME, which managed Redis services allow where CONFIG is
// often disabled.
func (s *Store) Settings(ctx context.Context) ([]NodeSettings, error) {
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		var (
			mu  sync.Mutex
			out []NodeSettings
		)
		err := cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
			n, err := nodeSettings(ctx, c)
			if err != nil {
				return err
			}
			n.Addr = c.Options().Addr
			mu.Lock()
			out = append(out, n)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return nil, wrap("settings", err)
		}
		return out, nil
	}
	n, err := nodeSettings(ctx, s.rdb)
	if err != nil {
		return nil, wrap("settings", err)
	}
	return []NodeSettings{n}, nil
}

// OutOfMemory reports whether any node refuses writes for lack of memory.
func (s *Store) OutOfMemory(ctx context.Context) (bool, error) {
	nodes, err := s.Settings(ctx)
	if err != nil {
		return false, err
	}
	for _, n := range nodes {
		if n.OutOfMemory() {
			return true, nil
		}
	}
	return false, nil
}

func nodeSettings(ctx context.Context, c redis.Cmdable) (NodeSettings, error) {
	f, err := redisinfo.Read(ctx, c, "memory")
	if err != nil {
		return NodeSettings{}, err
	}
	n := NodeSettings{MaxMemoryPolicy: f["maxmemory_policy"]}
	if n.MaxMemoryPolicy == "" {
		return NodeSettings{}, fmt.Errorf("INFO memory has no maxmemory_policy")
	}
	n.MaxMemory, _ = f.Int("maxmemory")
	used, _ := f.Int("used_memory")
	notCounted, _ := f.Int("mem_not_counted_for_evict")
	n.UsedMemory = used - notCounted
	if cfg, err := c.ConfigGet(ctx, "hash-max-listpack-value").Result(); err == nil {
		n.ListpackValue, _ = strconv.ParseInt(cfg["hash-max-listpack-value"], 10, 64)
	}
	before := time.Now()
	t, err := c.Time(ctx).Result()
	if err != nil {
		return NodeSettings{}, fmt.Errorf("TIME: %w", err)
	}
	after := time.Now()
	n.ClockSkew = t.Sub(before.Add(after.Sub(before) / 2))
	return n, nil
}
