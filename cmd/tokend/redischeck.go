package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/redisinfo"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/store/redisstore"
	"github.com/tokend/tokend/token"
)

// checkRedis checks, at start-up, the Redis settings tokend depends on
// (docs/operations.md, "Memory limits and eviction"):
//
//   - maxmemory-policy must be noeviction on every node: any other policy
//     lets Redis delete users, clients and session indexes. Otherwise serve
//     refuses to start, unless REDIS_ALLOW_EVICTION=true, which logs an
//     error instead;
//   - a node whose clock differs from ours by more than the access-token
//     verification leeway gets a warning: the session and rate-limit times
//     tokend and its scripts compare come from both clocks;
//   - a node whose hash-max-listpack-value is below
//     redisstore.ListpackValue gets a warning: sessions then take several
//     times the memory (where CONFIG is forbidden it is not checked).
//
// It returns the readiness check for /readyz: a ping, then whether Redis
// is out of memory (so a full Redis, which answers 503 to every sign-in
// and refresh, says why). The embedded store gets a plain ping.
func checkRedis(ctx context.Context, b *backend, cfg config.Config, log *slog.Logger) (func(context.Context) error, error) {
	rs := b.redis
	if rs == nil {
		return b.store.Ping, nil
	}
	nodes, err := rs.Settings(ctx)
	if err != nil {
		log.Warn("could not read the Redis settings (INFO memory, TIME): maxmemory-policy and clock are not checked",
			slog.String("error", err.Error()))
	}
	logConnected(ctx, rs, nodes, cfg, log)
	if err := judgeRedis(nodes, cfg, log); err != nil {
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

// logConnected says, in one line, which Redis serve is using: its URL
// (password redacted), database, version and maxmemory-policy (every
// node's, for a Cluster). What it cannot read (an ACL forbidding INFO)
// is left out.
func logConnected(ctx context.Context, rs *redisstore.Store, nodes []redisstore.NodeSettings, cfg config.Config, log *slog.Logger) {
	attrs := []slog.Attr{slog.String("redis", config.RedactURL(cfg.RedisURL))}
	if c, ok := rs.Redis().(*redis.Client); ok {
		attrs = append(attrs, slog.Int("db", c.Options().DB))
	}
	if info, err := redisinfo.Read(ctx, rs.Redis(), "server"); err == nil {
		attrs = append(attrs, slog.String("version", info["redis_version"]), slog.String("mode", info["redis_mode"]))
	}
	policies := make([]string, 0, len(nodes))
	for _, n := range nodes {
		if !slices.Contains(policies, n.MaxMemoryPolicy) {
			policies = append(policies, n.MaxMemoryPolicy)
		}
	}
	if len(policies) > 0 {
		attrs = append(attrs, slog.String("maxmemory_policy", strings.Join(policies, ",")))
	}
	if len(nodes) > 1 {
		attrs = append(attrs, slog.Int("nodes", len(nodes)))
	}
	log.LogAttrs(ctx, slog.LevelInfo, "connected to Redis", attrs...)
}

// judgeRedis applies checkRedis's rules to the nodes' settings: an error
// for an evicting policy (unless allowed), log lines for the rest.
func judgeRedis(nodes []redisstore.NodeSettings, cfg config.Config, log *slog.Logger) error {
	for _, n := range nodes {
		node := slog.String("node", n.Addr)
		if n.MaxMemoryPolicy != redisstore.NoEviction {
			msg := fmt.Sprintf("Redis maxmemory-policy is %q, not %q: under memory pressure Redis deletes tokend's users, clients and session indexes (users cannot sign in, logging out everywhere misses sessions)",
				n.MaxMemoryPolicy, redisstore.NoEviction)
			if !cfg.RedisAllowEviction {
				return fmt.Errorf("%s; set maxmemory-policy noeviction (redis-server --maxmemory-policy noeviction, or CONFIG SET maxmemory-policy noeviction and CONFIG REWRITE), or set REDIS_ALLOW_EVICTION=true to start anyway (not recommended)", msg)
			}
			log.Error(msg+"; starting anyway because REDIS_ALLOW_EVICTION=true", node, slog.String("maxmemory_policy", n.MaxMemoryPolicy))
		}
		if skew := n.ClockSkew.Abs(); skew > token.AccessLeeway {
			log.Warn("the Redis server's clock differs from this host's by more than the token verification leeway; sync both with NTP",
				node, slog.Duration("skew", n.ClockSkew), slog.Duration("leeway", token.AccessLeeway))
		}
		if n.ListpackValue > 0 && n.ListpackValue < redisstore.ListpackValue {
			log.Warn(fmt.Sprintf("Redis hash-max-listpack-value is %d, below the %d tokend's session records need to stay compact: sessions take several times the memory (docs/operations.md, \"Memory limits and eviction\"); set it with redis-server --hash-max-listpack-value %d, or CONFIG SET and CONFIG REWRITE",
				n.ListpackValue, redisstore.ListpackValue, redisstore.ListpackValue), node)
		}
		if n.OutOfMemory() {
			log.Error("Redis is out of memory (used_memory above maxmemory): sign-ins and refreshes fail with 503 until memory is freed or maxmemory raised",
				node, slog.Int64("used_memory", n.UsedMemory), slog.Int64("maxmemory", n.MaxMemory))
		}
	}
	return nil
}
