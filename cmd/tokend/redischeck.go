package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/token"
)

// checkRedis checks, at start-up, the Redis tokend is about to use
// (redisFindings; docs/operations.md, "Redis"), logs what is not as it
// should be and refuses to start on what tokend cannot run with.
//
// It returns the readiness check for /readyz: a ping, then whether Redis
// is out of memory (so a full Redis, which answers 503 to every sign-in
// and refresh, says why). The embedded store gets a plain ping.
func checkRedis(ctx context.Context, b *backend, cfg config.Config, log *slog.Logger) (func(context.Context) error, error) {
	rs := b.redis
	if rs == nil {
		return b.store.Ping, nil
	}
	nodes, fs := redisFindings(ctx, rs, cfg)
	logConnected(ctx, rs, nodes, cfg, log)
	if err := logFindings(ctx, log, fs); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		if err := rs.Ping(ctx); err != nil {
			return err
		}
		full, err := rs.OutOfMemory(ctx)
		if err != nil {
			return nil // answered a ping; INFO may be forbidden by an ACL
		}
		if full {
			return fmt.Errorf("redis: used_memory above maxmemory: %w", server.ErrStoreFull)
		}
		return nil
	}, nil
}

// redisFindings reads the settings of every node of the Redis rs talks to
// (Store.Settings) and judges them (judgeRedis), then checks that this
// Redis user may write under REDIS_KEY_PREFIX (probeRedis). Settings it
// cannot read (an ACL forbidding INFO) are a warning and go unchecked.
func redisFindings(ctx context.Context, rs *redisstore.Store, cfg config.Config) ([]redisstore.NodeSettings, []finding) {
	nodes, err := rs.Settings(ctx)
	var fs []finding
	if err != nil {
		fs = append(fs, newWarn("redis.settings",
			"could not read the Redis settings (INFO, TIME): "+err.Error()+"; version, maxmemory-policy, memory, persistence and clock are not checked",
			"allow this Redis user INFO and TIME (ACL SETUSER <user> +info +time)"))
	} else {
		fs = judgeRedis(nodes, cfg)
	}
	return nodes, append(fs, probeRedis(ctx, rs, cfg))
}

// logConnected says, in one line, which Redis serve is using: its URL
// (password redacted), database, version and maxmemory-policy (every
// node's, for a Cluster). What it cannot read (an ACL forbidding INFO)
// is left out.
func logConnected(ctx context.Context, rs *redisstore.Store, nodes []redisstore.NodeSettings, cfg config.Config, log *slog.Logger) {
	attrs := []slog.Attr{slog.String("redis", config.RedactURL(cfg.RedisURL))}
	if c, ok := rs.Redis().(*redis.Client); ok {
		attrs = append(attrs, slog.Int("db", c.Options().DB))
	}
	var versions, modes, policies []string
	add := func(l []string, v string) []string {
		if !slices.Contains(l, v) {
			l = append(l, v)
		}
		return l
	}
	for _, n := range nodes {
		versions, modes, policies = add(versions, n.Version), add(modes, n.Mode), add(policies, n.MaxMemoryPolicy)
	}
	if len(nodes) > 0 {
		attrs = append(attrs, slog.String("version", strings.Join(versions, ",")), slog.String("mode", strings.Join(modes, ",")),
			slog.String("maxmemory_policy", strings.Join(policies, ",")))
	}
	if len(nodes) > 1 {
		attrs = append(attrs, slog.Int("nodes", len(nodes)))
	}
	log.LogAttrs(ctx, slog.LevelInfo, "connected to Redis", attrs...)
}

// redisRules are the rules on a Redis node's settings (docs/operations.md,
// "Persistence", "Memory limits and eviction"), each judging one node.
var redisRules = []func(redisstore.NodeSettings, config.Config) finding{
	redisVersion, redisPolicy, redisMemory, redisPersistence, redisListpack, redisClock,
}

// judgeRedis applies every rule of redisRules to every node: for each
// rule, the nodes it finds fault with (named on a Cluster), or one OK.
func judgeRedis(nodes []redisstore.NodeSettings, cfg config.Config) []finding {
	var out []finding
	for _, rule := range redisRules {
		var good, bad []finding
		for _, n := range nodes {
			f := rule(n, cfg).on(n.Addr)
			if f.level == levelOK {
				good = append(good, f)
			} else {
				bad = append(bad, f)
			}
		}
		if len(bad) == 0 && len(good) > 0 {
			ok := good[0]
			ok.node = ""
			if len(nodes) > 1 {
				ok.message = fmt.Sprintf("%s (every one of %d nodes)", ok.message, len(nodes))
			}
			bad = append(bad, ok)
		}
		out = append(out, bad...)
	}
	return out
}

// redisVersion: tokend needs Redis 6.2 or later.
func redisVersion(n redisstore.NodeSettings, _ config.Config) finding {
	if !redisstore.VersionSupported(n.Version) {
		return newFail("redis.version",
			fmt.Sprintf("Redis %s is older than %s, the oldest tokend runs on (its scripts use SET PXAT and XADD MINID)", n.Version, redisstore.MinVersion),
			"upgrade Redis (to 7 or later)").refusing()
	}
	return newOK("redis.version", fmt.Sprintf("Redis %s (%s), %s or later as tokend needs", n.Version, n.Mode, redisstore.MinVersion))
}

// redisPolicy: maxmemory-policy must be noeviction: any other policy lets
// Redis delete users, clients and session indexes. serve refuses to start
// otherwise, unless REDIS_ALLOW_EVICTION=true, which logs an error instead.
func redisPolicy(n redisstore.NodeSettings, cfg config.Config) finding {
	if n.MaxMemoryPolicy == redisstore.NoEviction {
		return newOK("redis.maxmemory-policy", "maxmemory-policy is noeviction")
	}
	msg := fmt.Sprintf("Redis maxmemory-policy is %q, not %q: under memory pressure Redis deletes tokend's users, clients and session indexes (users cannot sign in, logging out everywhere misses sessions)",
		n.MaxMemoryPolicy, redisstore.NoEviction)
	fix := "set maxmemory-policy noeviction (redis-server --maxmemory-policy noeviction, or CONFIG SET maxmemory-policy noeviction and CONFIG REWRITE)"
	if cfg.RedisAllowEviction {
		return newFail("redis.maxmemory-policy", msg+"; serve starts anyway because REDIS_ALLOW_EVICTION=true", fix,
			slog.String("maxmemory_policy", n.MaxMemoryPolicy))
	}
	return newFail("redis.maxmemory-policy", msg, fix+", or set REDIS_ALLOW_EVICTION=true to start anyway (not recommended)").refusing()
}

// redisMemory: a Redis out of memory refuses writes, so sign-ins and
// refreshes fail with 503.
func redisMemory(n redisstore.NodeSettings, _ config.Config) finding {
	if n.OutOfMemory() {
		return newFail("redis.memory",
			fmt.Sprintf("Redis is out of memory (used_memory %s above maxmemory %s): sign-ins and refreshes fail with 503 until memory is freed or maxmemory raised", mib(n.UsedMemory), mib(n.MaxMemory)),
			"raise maxmemory or free memory (docs/operations.md, \"Memory sizing\")",
			slog.Int64("used_memory", n.UsedMemory), slog.Int64("maxmemory", n.MaxMemory))
	}
	if n.MaxMemory == 0 {
		return newOK("redis.memory", fmt.Sprintf("%s used, no maxmemory limit", mib(n.UsedMemory)))
	}
	return newOK("redis.memory", fmt.Sprintf("%s used of maxmemory %s (%.0f%%)", mib(n.UsedMemory), mib(n.MaxMemory), 100*float64(n.UsedMemory)/float64(n.MaxMemory)))
}

// mib writes a number of bytes in MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// redisPersistence: users, clients and sessions exist only in Redis, so
// it must keep them on disk, best with AOF (a crash loses about a second;
// RDB snapshots alone lose minutes of logouts, which come back).
func redisPersistence(n redisstore.NodeSettings, _ config.Config) finding {
	const check = "redis.persistence"
	aof := "turn AOF on: redis-server --appendonly yes --appendfsync everysec, or CONFIG SET appendonly yes and CONFIG REWRITE (docs/operations.md, \"Persistence\")"
	switch {
	case n.PersistenceErr != "":
		return newFail(check, "Redis reports that its last save failed ("+n.PersistenceErr+"): it refuses writes until a save succeeds (stop-writes-on-bgsave-error), and a restart loses what was not saved",
			"read the Redis log: a full disk, or a data directory Redis cannot write")
	case n.AOF && n.AppendFsync == "no":
		return newWarn(check, "AOF is on with appendfsync no: a crash loses the writes of up to about 30 s, and the logouts and revocations among them come back",
			"set appendfsync everysec (CONFIG SET appendfsync everysec and CONFIG REWRITE)")
	case n.AOF && n.AppendFsync != "":
		return newOK(check, "AOF is on, appendfsync "+n.AppendFsync)
	case n.AOF:
		return newOK(check, "AOF is on")
	case !n.Config:
		return newWarn(check, "AOF is off, and whether RDB snapshots are on cannot be read (CONFIG GET is not allowed): without persistence a Redis restart deletes every user, client and session", aof)
	case n.Save != "":
		return newWarn(check, fmt.Sprintf("AOF is off: RDB snapshots alone (save %q) lose every write since the last snapshot on a crash, and the logouts and revocations among them come back", n.Save), aof)
	}
	return newWarn(check, "Redis keeps nothing on disk (AOF off, no RDB snapshots): a Redis restart deletes every user, client and session", aof)
}

// redisListpack: a user's sessions hash stays compact (listpack) while its
// records fit hash-max-listpack-value and its count
// hash-max-listpack-entries; otherwise it takes several times the memory.
// Not checked where CONFIG GET is not allowed.
func redisListpack(n redisstore.NodeSettings, cfg config.Config) finding {
	const check = "redis.listpack"
	switch {
	case !n.Config:
		return newOK(check, "hash-max-listpack-value not checked: CONFIG GET is not allowed (set it to "+strconv.Itoa(redisstore.ListpackValue)+" or more in the service's parameters)")
	case n.ListpackValue > 0 && n.ListpackValue < redisstore.ListpackValue:
		return newWarn(check, fmt.Sprintf("Redis hash-max-listpack-value is %d, below the %d tokend's session records need to stay compact: sessions take several times the memory (docs/operations.md, \"Memory limits and eviction\")",
			n.ListpackValue, redisstore.ListpackValue),
			fmt.Sprintf("set it with redis-server --hash-max-listpack-value %d, or CONFIG SET and CONFIG REWRITE", redisstore.ListpackValue))
	case n.ListpackEntries > 0 && n.ListpackEntries < int64(cfg.MaxSessionsPerUser):
		return newWarn(check, fmt.Sprintf("Redis hash-max-listpack-entries is %d, below MAX_SESSIONS_PER_USER (%d): the sessions of a user with more than %d take several times the memory",
			n.ListpackEntries, cfg.MaxSessionsPerUser, n.ListpackEntries),
			fmt.Sprintf("set hash-max-listpack-entries to %d or more (CONFIG SET and CONFIG REWRITE), or lower MAX_SESSIONS_PER_USER", cfg.MaxSessionsPerUser))
	}
	return newOK(check, fmt.Sprintf("hash-max-listpack-value %d, hash-max-listpack-entries %d", n.ListpackValue, n.ListpackEntries))
}

// redisClock: the session and rate-limit times tokend and its scripts
// compare come from both clocks, so they may differ by at most the
// access-token verification leeway.
func redisClock(n redisstore.NodeSettings, _ config.Config) finding {
	if skew := n.ClockSkew.Abs(); skew > token.AccessLeeway {
		return newWarn("redis.clock",
			fmt.Sprintf("the Redis server's clock differs from this host's by %v, more than the token verification leeway (%v)", n.ClockSkew.Round(time.Millisecond), token.AccessLeeway),
			"sync both with NTP", slog.Duration("skew", n.ClockSkew), slog.Duration("leeway", token.AccessLeeway))
	}
	return newOK("redis.clock", fmt.Sprintf("Redis's clock is within %v of this host's", max(n.ClockSkew.Abs().Round(time.Millisecond), time.Millisecond)))
}

// probeRedis checks that this Redis user may run tokend's scripts on keys
// under REDIS_KEY_PREFIX (Store.Probe): an ACL that does not allow them,
// or a read-only replica, would fail every sign-in, so serve refuses to
// start on them. A Redis out of memory cannot be probed (redisMemory
// says so); another failure is serve's to report at /readyz.
func probeRedis(ctx context.Context, rs *redisstore.Store, cfg config.Config) finding {
	const check = "redis.acl"
	err := rs.Probe(ctx)
	msg := fmt.Sprint(err)
	switch {
	case err == nil:
		return newOK(check, fmt.Sprintf("this Redis user may run scripts on keys under REDIS_KEY_PREFIX %q", cfg.RedisKeyPrefix))
	case strings.Contains(msg, "NOPERM"):
		return newFail(check, fmt.Sprintf("this Redis user may not run tokend's scripts on keys under REDIS_KEY_PREFIX %q: %v", cfg.RedisKeyPrefix, err),
			fmt.Sprintf("allow it the prefix and every command: ACL SETUSER <user> ~%s* &* +@all (docs/operations.md, \"A Redis shared with other services\")", cfg.RedisKeyPrefix)).refusing()
	case strings.Contains(msg, "READONLY"):
		return newFail(check, "REDIS_URL names a read-only replica: "+msg,
			"point REDIS_URL at the master, or at the sentinels (redis+sentinel://), which name the master").refusing()
	case strings.Contains(msg, "OOM"):
		return newWarn(check, "not checked: Redis refuses writes for lack of memory ("+msg+")", "see redis.memory")
	}
	return newFail(check, "could not write under REDIS_KEY_PREFIX: "+msg, "check that Redis answers")
}
