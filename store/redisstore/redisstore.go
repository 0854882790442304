// Package redisstore is tokend's production store.Store on Redis, through a
// go-redis v9 redis.UniversalClient, so a single node, Sentinel and Cluster
// all work. It needs Redis 6.2 or later (SET PXAT).
//
// # URLs
//
// Open accepts:
//
//	redis://[user:password@]host[:port][/db][?option=value...]        single node
//	rediss://...                                                       the same over TLS
//	unix://[user:password@]/path/redis.sock[?db=N]                     single node, Unix socket
//	redis+sentinel://[user:password@]host:port[,host:port...][/db]?master_name=NAME[&...]
//	rediss+sentinel://...                                              Sentinel over TLS
//	redis+cluster://[user:password@]host:port[,host:port...][?...]     Cluster
//	rediss+cluster://...                                               Cluster over TLS
//
// The options are go-redis's (redis.ParseURL, redis.ParseFailoverURL,
// redis.ParseClusterURL), e.g. dial_timeout=3s, pool_size=50. For
// Sentinel the userinfo authenticates to the sentinels; the master's
// credentials go in the username= and password= options.
//
// # Keys
//
// With prefix p (default "tokend:") and a user id uid:
//
//	p{uid}:user        STRING user record (with nb, nbx: see below)
//	p{uid}:s           HASH   session id → session record: the user's sessions and their index;
//	                          expires (PXAT) with the longest-lived, at its expiry + store.TombstoneGrace
//	p{uid}:p:<id>      STRING a DPoP proof id a sign-in or rotation recorded: the request id; expires with the proof
//	pdpop:<id>         STRING the same for UseProof
//	pname:<lowercase>  STRING uid
//	pusers             SET    uids
//	pclient:<id>       HASH   id sh(secret hash) pub gr(grants) sc(scopes) au(audiences) dp(DPoP required) ca
//	pclients           SET    client ids
//
// Every key of a user carries the hash tag {uid}, so every script, which
// touches only one user's keys, runs in one Cluster slot. Operations that
// span users (the name, users and clients keys) are single-key commands.
//
// User and session records have a fixed binary layout (the field list is
// in scripts.go), written by the scripts with Redis's built-in struct
// library, or in Go for a new session, and decoded in Go (codec.go). A
// session holds its client, granted scope, the refresh key it started
// with, the DPoP key it is bound to, device, IP, the generation of its
// current refresh token, created / last used / expires / revoked times,
// the revocation reason and the id of the request that made the last
// rotation — nothing derived from a token: refresh tokens are MACs the
// server computes from (user, session, generation). A rotation rewrites a
// fixed-size header, so a session never grows; the User-Agent is stored
// compressed (useragent.go). Redis keeps a user's sessions in the compact
// listpack encoding while every record is at most hash-max-listpack-value
// bytes: ListpackValue says what tokend needs.
//
// The user's nb (not-before, unix ms), nbx (one exempt session id) and nbr
// (reason) end, lazily, every session created at or before nb except nbx:
// "log out everywhere", "log out others" and disabling a user are one
// write whatever the number of sessions, and the rotate, logout, list and
// session reads apply the rule (store.Decide, store.Effective).
//
// A session record outlives its absolute expiry by store.TombstoneGrace
// (by Redis's clock, as a key expiry would), so an expired or revoked
// session is reported as such rather than as unknown for a while. The
// sessions hash holds at most the session cap (store.NewSession.Max) of
// records after a sign-in that needed room — createSession drops gone
// records, ends the least recently used active sessions beyond the cap,
// and drops the least recently used ended ones — and expires with its
// longest-lived session, so memory stays bounded without a cleanup job.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/store"
)

// DefaultPrefix is the default Options.Prefix.
const DefaultPrefix = "tokend:"

// Options tune a Store.
type Options struct {
	// Prefix starts every key [DefaultPrefix]. It must not contain '{' or
	// '}', which would change the keys' hash slots.
	Prefix string
	// ServerClock dates Rotate and Logout by the later of the caller's Now
	// and Redis's clock when the script runs. A call that waited in Redis
	// behind a stall (SIGSTOP, a slow command) then takes effect "now",
	// so the client's retry that follows is inside the reuse window: a 503
	// stays safe to retry however long the stall (docs/design.md, "The
	// reuse window"). tokend serve sets it; tests that drive a settable
	// clock leave it off, since Redis's clock cannot be set.
	ServerClock bool
}

// Store is a store.Store on Redis. It is safe for concurrent use.
type Store struct {
	rdb         redis.UniversalClient
	prefix      string
	serverClock string // ARGV of the rotate and logout scripts: "1" or "0"
}

var _ store.Store = (*Store)(nil)

// New returns a Store on rdb. The Store takes ownership of the client:
// Close closes it.
func New(rdb redis.UniversalClient, opts Options) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("redisstore: nil client")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(opts.Prefix, "{}") {
		return nil, fmt.Errorf("redisstore: key prefix %q must not contain '{' or '}'", opts.Prefix)
	}
	clock := "0"
	if opts.ServerClock {
		clock = "1"
	}
	return &Store{rdb: rdb, prefix: opts.Prefix, serverClock: clock}, nil
}

// Open connects to the Redis at rawURL (see the package doc for the
// forms), checks that it answers, and returns a Store that owns the
// client.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	rdb, err := NewClient(rawURL)
	if err != nil {
		return nil, err
	}
	s, err := New(rdb, opts)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	if err := s.Ping(ctx); err != nil {
		rdb.Close()
		return nil, err
	}
	return s, nil
}

// NewClient returns a go-redis client for rawURL (see the package doc for
// the forms) without connecting. Error messages never repeat the URL, which
// may hold a password.
func NewClient(rawURL string) (redis.UniversalClient, error) {
	scheme, _, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, errors.New("redisstore: invalid Redis URL: want redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://")
	}
	base, mode, _ := strings.Cut(strings.ToLower(scheme), "+")
	switch {
	case mode == "" && (base == "redis" || base == "rediss" || base == "unix"):
		o, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, urlError(err)
		}
		tune(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.MaxRetryBackoff, &o.DialerRetries)
		return redis.NewClient(o), nil
	case mode == "sentinel" && (base == "redis" || base == "rediss"):
		o, err := redis.ParseFailoverURL(multiHost(rawURL, base))
		if err != nil {
			return nil, urlError(err)
		}
		if o.MasterName == "" {
			return nil, errors.New("redisstore: invalid Redis URL: a Sentinel URL needs ?master_name=NAME")
		}
		tune(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.MaxRetryBackoff, &o.DialerRetries)
		return redis.NewFailoverClient(o), nil
	case mode == "cluster" && (base == "redis" || base == "rediss"):
		o, err := redis.ParseClusterURL(multiHost(rawURL, base))
		if err != nil {
			return nil, urlError(err)
		}
		tune(&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.MaxRetries, &o.MaxRetryBackoff, &o.DialerRetries)
		return redis.NewClusterClient(o), nil
	}
	return nil, fmt.Errorf("redisstore: invalid Redis URL: unknown scheme %q", scheme)
}

// Client defaults for an outage: tokend answers 503 quickly while Redis is
// unreachable and serves again as soon as it is back (within about a
// second: after a burst of failed dials go-redis stops dialing and probes
// once a second). Each applies only where the URL does not set the
// option (dial_timeout=, read_timeout=, write_timeout=, max_retries=,
// max_retry_backoff=).
const (
	// DialTimeout bounds one connection attempt [go-redis: 5s]. Redis is
	// on the local network; a host that does not answer in 2 s is down.
	DialTimeout = 2 * time.Second
	// ReadTimeout and WriteTimeout bound one command [go-redis: 5s]. Every
	// tokend command is one small key or Lua script of microseconds; a
	// Redis blocked for 2 s gets a 503 rather than a piled-up queue. A
	// timed-out command is never resent.
	ReadTimeout  = 2 * time.Second
	WriteTimeout = 2 * time.Second
	// MaxRetries resends a command after a broken connection or refused
	// dial, MaxRetryBackoff apart at most [go-redis: 3, 512ms], which rides
	// out a failover or a restart of a second without the client seeing
	// it. A resent rotation is safe: the rotate script answers a replay of
	// the same request with the same success instead of reuse.
	MaxRetries      = 2
	MaxRetryBackoff = 100 * time.Millisecond
	// DialerRetries is how many times one dial is tried [go-redis: 5, 100
	// ms apart]; the command retries above already cover a refused dial.
	DialerRetries = 1
)

// tune applies the defaults above to a go-redis option set.
func tune(dial, read, write *time.Duration, retries *int, backoff *time.Duration, dialer *int) {
	if *dial == 0 {
		*dial = DialTimeout
	}
	if *read == 0 {
		*read = ReadTimeout
	}
	if *write == 0 {
		*write = WriteTimeout
	}
	if *retries == 0 {
		*retries = MaxRetries
	}
	if *backoff == 0 {
		*backoff = MaxRetryBackoff
	}
	if *dialer == 0 {
		*dialer = DialerRetries
	}
}

// multiHost rewrites scheme://[userinfo@]h1,h2,h3/rest as go-redis's
// base://[userinfo@]h1/rest?addr=h2&addr=h3.
func multiHost(rawURL, base string) string {
	_, rest, _ := strings.Cut(rawURL, "://")
	auth, tail := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		auth, tail = rest[:i], rest[i:]
	}
	userinfo, hosts := "", auth
	if i := strings.LastIndex(auth, "@"); i >= 0 {
		userinfo, hosts = auth[:i+1], auth[i+1:]
	}
	list := strings.Split(hosts, ",")
	var extra strings.Builder
	for _, h := range list[1:] {
		if h == "" {
			continue
		}
		if extra.Len() > 0 || strings.Contains(tail, "?") {
			extra.WriteByte('&')
		} else {
			extra.WriteByte('?')
		}
		extra.WriteString("addr=" + url.QueryEscape(h))
	}
	tail, frag, hasFrag := strings.Cut(tail, "#")
	out := base + "://" + userinfo + list[0] + tail + extra.String()
	if hasFrag {
		out += "#" + frag
	}
	return out
}

// urlError drops the URL (and any password in it) from a parse error.
func urlError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("redisstore: invalid Redis URL: %w", err)
}

// Redis returns the underlying client; tokend serve gives it to the login
// rate limiter (ratelimit.NewRedis), so both share one connection pool.
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

// Close closes the client (the Store owns it, whether from New or Open).
func (s *Store) Close() error {
	if err := s.rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("redisstore: close: %w", err)
	}
	return nil
}

// Keys.

func (s *Store) userTag(uid string) string      { return s.prefix + "{" + uid + "}:" }
func (s *Store) userKey(uid string) string      { return s.userTag(uid) + "user" }
func (s *Store) sessionsKey(uid string) string  { return s.userTag(uid) + "s" }
func (s *Store) proofKey(uid, id string) string { return s.userTag(uid) + "p:" + id }
func (s *Store) nameKey(username string) string {
	return s.prefix + "name:" + strings.ToLower(username)
}
func (s *Store) lookKey(username string) string {
	return s.prefix + "look:" + credential.Skeleton(username)
}
func (s *Store) usersKey() string           { return s.prefix + "users" }
func (s *Store) clientKey(id string) string { return s.prefix + "client:" + id }
func (s *Store) clientsKey() string         { return s.prefix + "clients" }

func wrap(op string, err error) error {
	return fmt.Errorf("redisstore: %s: %w", op, err)
}
