package events

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultMaxLen caps a Log's length: at ~200 bytes an event, 250 000 of
// them are ~50 MB of Redis memory. Within the retention only an abnormal
// burst (more than 250 000 session ends in one access-token lifetime)
// reaches it; consumers are then told (Gap).
const DefaultMaxLen = 250_000

// RedisLog is the Log of the Redis store: one Redis Stream.
//
// Keys (prefix p, REDIS_KEY_PREFIX): the stream p{events} and a hash
// p{events}:meta (seq: the last event number, ms: the last id's time —
// State.LastMS —, cut: see State.Cut). The hash tag {events} puts both in one slot, so the
// append script runs on Redis Cluster; it also puts the whole feed on one
// master (docs/design.md, "Revocation events": the write rate is that of
// session ends, and each replica reads it with one blocking XREAD).
type RedisLog struct {
	rdb       redis.UniversalClient
	stream    string
	meta      string
	retention time.Duration
	max       int
}

// NewRedisLog returns the log under prefix on rdb, keeping events for
// retention and at most max of them (max ≤ 0: DefaultMaxLen).
func NewRedisLog(rdb redis.UniversalClient, prefix string, retention time.Duration, max int) *RedisLog {
	if max <= 0 {
		max = DefaultMaxLen
	}
	return &RedisLog{rdb: rdb, stream: prefix + "{events}", meta: prefix + "{events}:meta", retention: retention, max: max}
}

// Retention is how long events are kept.
func (l *RedisLog) Retention() time.Duration { return l.retention }

// appendScript numbers the event, adds it with the id "<ms>-<number>"
// (Redis's clock, never going back), trims what is older than the
// retention (MINID) and, beyond the cap, the oldest (MAXLEN), recording
// the first survivor of such a cut.
var appendScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('HGET', KEYS[2], 'ms') or '0')
if now < last then now = last end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('HSET', KEYS[2], 'ms', string.format('%.0f', now))
local id = string.format('%.0f', now) .. '-' .. seq
redis.call('XADD', KEYS[1], 'MINID', string.format('%.0f', now - tonumber(ARGV[2])), id, 'e', ARGV[1])
if redis.call('XLEN', KEYS[1]) > tonumber(ARGV[3]) then
  redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[3])
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  redis.call('HSET', KEYS[2], 'cut', first[1][1])
end
return id
`)

// Append adds e.
func (l *RedisLog) Append(ctx context.Context, e Event) (ID, error) {
	if err := e.Valid(); err != nil {
		return ID{}, err
	}
	b, err := encode(e)
	if err != nil {
		return ID{}, err
	}
	s, err := appendScript.Run(ctx, l.rdb, []string{l.stream, l.meta}, b, l.retention.Milliseconds(), l.max).Text()
	if err != nil {
		return ID{}, fmt.Errorf("events: append: %w", err)
	}
	return ParseID(s)
}

// Read returns up to n events after `after`, waiting with XREAD BLOCK.
func (l *RedisLog) Read(ctx context.Context, after ID, n int, wait time.Duration) ([]Event, error) {
	var msgs []redis.XMessage
	if wait <= 0 {
		var err error
		msgs, err = l.rdb.XRangeN(ctx, l.stream, "("+after.String(), "+", int64(n)).Result()
		if err != nil {
			return nil, fmt.Errorf("events: read: %w", err)
		}
	} else {
		if wait < time.Millisecond {
			wait = time.Millisecond
		}
		res, err := l.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{l.stream, after.String()}, Count: int64(n), Block: wait}).Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("events: read: %w", err)
		}
		for _, s := range res {
			msgs = append(msgs, s.Messages...)
		}
	}
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		id, err := ParseID(m.ID)
		if err != nil {
			return nil, err
		}
		raw, _ := m.Values["e"].(string)
		e, err := decode(id, []byte(raw))
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// State describes the stream.
func (l *RedisLog) State(ctx context.Context) (State, error) {
	var first, last *redis.XMessageSliceCmd
	var meta *redis.SliceCmd
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		first = p.XRangeN(ctx, l.stream, "-", "+", 1)
		last = p.XRevRangeN(ctx, l.stream, "+", "-", 1)
		meta = p.HMGet(ctx, l.meta, "seq", "cut", "ms")
		return nil
	})
	if err != nil {
		return State{}, fmt.Errorf("events: state: %w", err)
	}
	var st State
	if m := first.Val(); len(m) > 0 {
		if st.First, err = ParseID(m[0].ID); err != nil {
			return State{}, err
		}
	}
	if m := last.Val(); len(m) > 0 {
		if st.Last, err = ParseID(m[0].ID); err != nil {
			return State{}, err
		}
	}
	v := meta.Val()
	if s, ok := v[0].(string); ok {
		if st.Seq, err = strconv.ParseUint(s, 10, 64); err != nil {
			return State{}, fmt.Errorf("events: state: seq %q", s)
		}
	}
	if s, ok := v[1].(string); ok {
		if st.Cut, err = ParseID(s); err != nil {
			return State{}, err
		}
	}
	if s, ok := v[2].(string); ok {
		if st.LastMS, err = strconv.ParseInt(s, 10, 64); err != nil {
			return State{}, fmt.Errorf("events: state: ms %q", s)
		}
	}
	return st, nil
}
