package redisstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// MinVersion is the oldest Redis tokend runs on: its scripts and the
// event log use SET ... PXAT and XADD ... MINID, both of Redis 6.2.
const MinVersion = "6.2.0"

// VersionSupported reports whether a Redis of version v (INFO's
// redis_version, "7.0.15") is MinVersion or later.
func VersionSupported(v string) bool {
	return compareVersions(v, MinVersion) >= 0
}

// compareVersions compares dotted version numbers part by part, a missing
// or non-numeric part counting as 0.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return cmp.Compare(x, y)
		}
	}
	return 0
}

// NodeSettings are one Redis node's settings that tokend depends on.
type NodeSettings struct {
	Addr            string // the node ("" for a single node)
	Version         string // redis_version
	Mode            string // redis_mode: standalone, cluster
	MaxMemoryPolicy string // maxmemory-policy
	MaxMemory       int64  // maxmemory in bytes; 0 = no limit
	UsedMemory      int64  // used_memory minus mem_not_counted_for_evict: what Redis compares with maxmemory
	// AOF reports whether the append-only file is on (aof_enabled), and
	// PersistenceErr names the persistence status INFO reports as failed
	// (rdb_last_bgsave_status, aof_last_write_status,
	// aof_last_bgrewrite_status), "" when none is.
	AOF            bool
	PersistenceErr string
	// Config reports whether CONFIG GET answered (many managed services
	// forbid it); the fields below are read with it, zero without it.
	Config bool
	// ListpackValue and ListpackEntries are hash-max-listpack-value and
	// hash-max-listpack-entries.
	ListpackValue, ListpackEntries int64
	Save                           string        // the RDB snapshot schedule (save); "" = none
	AppendFsync                    string        // appendfsync: always, everysec or no
	ClockSkew                      time.Duration // the node's TIME minus this process's clock (at the round trip's midpoint)
}

// OutOfMemory reports whether the node refuses writes for lack of memory
// (under noeviction).
func (n NodeSettings) OutOfMemory() bool { return n.MaxMemory > 0 && n.UsedMemory > n.MaxMemory }

// forEachNode calls fn for every node tokend writes to — each shard
// (master and replicas) of a Cluster, with its address, else the one
// server, with "" — concurrently for a Cluster.
func (s *Store) forEachNode(ctx context.Context, fn func(ctx context.Context, addr string, c redis.Cmdable) error) error {
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		return cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error {
			return fn(ctx, c.Options().Addr, c)
		})
	}
	return fn(ctx, "", s.rdb)
}

// Settings reads the settings of every node tokend writes to with INFO
// and TIME, which managed Redis services allow, and CONFIG GET where it
// is allowed (see NodeSettings.Config).
func (s *Store) Settings(ctx context.Context) ([]NodeSettings, error) {
	var (
		mu  sync.Mutex
		out []NodeSettings
	)
	err := s.forEachNode(ctx, func(ctx context.Context, addr string, c redis.Cmdable) error {
		n, err := nodeSettings(ctx, c)
		if err != nil {
			return err
		}
		n.Addr = addr
		mu.Lock()
		out = append(out, n)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, wrap("settings", err)
	}
	slices.SortFunc(out, func(a, b NodeSettings) int { return strings.Compare(a.Addr, b.Addr) })
	return out, nil
}

// OutOfMemory reports whether any node refuses writes for lack of memory
// (INFO memory alone: /readyz asks it on every call).
func (s *Store) OutOfMemory(ctx context.Context) (bool, error) {
	var full atomic.Bool
	err := s.forEachNode(ctx, func(ctx context.Context, _ string, c redis.Cmdable) error {
		f, err := redisinfo.Read(ctx, c, "memory")
		if err != nil {
			return err
		}
		var n NodeSettings
		if err := n.readMemory(f); err != nil {
			return err
		}
		if n.OutOfMemory() {
			full.Store(true)
		}
		return nil
	})
	if err != nil {
		return false, wrap("settings", err)
	}
	return full.Load(), nil
}

// readMemory sets n's memory fields from INFO memory's.
func (n *NodeSettings) readMemory(f redisinfo.Info) error {
	n.MaxMemoryPolicy = f["maxmemory_policy"]
	if n.MaxMemoryPolicy == "" {
		return fmt.Errorf("INFO has no maxmemory_policy")
	}
	n.MaxMemory, _ = f.Int("maxmemory")
	used, _ := f.Int("used_memory")
	notCounted, _ := f.Int("mem_not_counted_for_evict")
	n.UsedMemory = used - notCounted
	return nil
}

func nodeSettings(ctx context.Context, c redis.Cmdable) (NodeSettings, error) {
	// INFO with no section: server, memory and persistence among the
	// default ones (one section per call before Redis 7).
	reply, err := c.Info(ctx).Result()
	if err != nil {
		return NodeSettings{}, fmt.Errorf("INFO: %w", err)
	}
	f := redisinfo.Parse(reply)
	n := NodeSettings{Version: f["redis_version"], Mode: f["redis_mode"], AOF: f["aof_enabled"] == "1"}
	if err := n.readMemory(f); err != nil {
		return NodeSettings{}, err
	}
	for _, st := range []string{"rdb_last_bgsave_status", "aof_last_write_status", "aof_last_bgrewrite_status"} {
		if v, ok := f[st]; ok && v != "ok" && n.PersistenceErr == "" {
			n.PersistenceErr = st + ":" + v
		}
	}
	// One CONFIG GET per parameter: several in one are Redis 7's.
	cfg := map[string]string{}
	n.Config = true
	for _, p := range []string{"hash-max-listpack-*", "save", "appendfsync"} {
		m, err := c.ConfigGet(ctx, p).Result()
		if err != nil {
			n.Config = false
			break
		}
		maps.Copy(cfg, m)
	}
	if n.Config {
		n.ListpackValue, _ = strconv.ParseInt(cfg["hash-max-listpack-value"], 10, 64)
		n.ListpackEntries, _ = strconv.ParseInt(cfg["hash-max-listpack-entries"], 10, 64)
		n.Save, n.AppendFsync = cfg["save"], cfg["appendfsync"]
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

// probeScript writes, reads back and deletes one key: what every script
// of tokend needs the Redis user to be allowed (EVALSHA, and SET, GET and
// DEL on keys under the prefix).
var probeScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'PX', 60000)
local v = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
return v
`)

// Probe checks that this Redis user may run tokend's scripts on keys
// under the prefix, with one short-lived key of its own
// (<prefix>{probe}:<random>) that it deletes: an ACL that does not allow
// the prefix or scripting, or a read-only replica, fails it.
func (s *Store) Probe(ctx context.Context) error {
	id := rand.Text()
	v, err := probeScript.Run(ctx, s.rdb, []string{s.prefix + "{probe}:" + id}, id).Text()
	if err != nil {
		return wrap("probe", err)
	}
	if v != id {
		return fmt.Errorf("redisstore: probe: wrote %q under the prefix, read back %q", id, v)
	}
	return nil
}
