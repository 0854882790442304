// Package testredis gives tests a Redis to talk to: the shared test server
// (URL, Client, Prefix) or a private redis-server process that a test may
// stop, kill, pause and restart (StartServer, StartReplica, StartSentinel,
// StartCluster), and fail over (Server.Failover).
//
// Tests never skip silently: when Redis is unreachable they fail, unless the
// environment says TOKEND_SKIP_REDIS_TESTS=1, in which case they skip.
//
//	TOKEND_TEST_REDIS_URL   the shared test Redis [redis://127.0.0.1:6379/0];
//	                        a single node, not a Cluster
//	TOKEND_SKIP_REDIS_TESTS 1 skips tests that need Redis instead of failing
package testredis

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/redisinfo"
)

const (
	// DefaultURL is the shared test Redis when TOKEND_TEST_REDIS_URL is unset.
	DefaultURL = "redis://127.0.0.1:6379/0"
	// EnvURL names the variable that points the tests at another Redis.
	EnvURL = "TOKEND_TEST_REDIS_URL"
	// EnvSkip names the variable that, set to 1, turns "Redis unreachable"
	// from a test failure into a skip.
	EnvSkip = "TOKEND_SKIP_REDIS_TESTS"

	startTimeout = 10 * time.Second
	stopTimeout  = 10 * time.Second
)

// unavailable fails the test, or skips it when EnvSkip=1.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(EnvSkip) == "1" {
		t.Skipf("%s (skipped: %s=1)", msg, EnvSkip)
	}
	t.Fatalf("%s; start Redis, point %s at one, or set %s=1 to skip Redis tests", msg, EnvURL, EnvSkip)
}

// URL returns the shared test Redis URL after checking that it answers
// PING.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		u = DefaultURL
	}
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("testredis: %s=%q: %v", EnvURL, u, err)
	}
	opt.MaxRetries = -1
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		unavailable(t, "testredis: Redis at %s is unreachable: %v", opt.Addr, err)
	}
	return u
}

// Client returns a client of the shared test Redis, closed when the test
// ends.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(URL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Prefix returns a key prefix unique to this test, "tokendtest:<random>:",
// and deletes every key under it from the shared test Redis when the test
// ends.
func Prefix(t testing.TB) string {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "tokendtest:" + hex.EncodeToString(b[:]) + ":"
	rdb := Client(t)
	t.Cleanup(func() {
		if err := DeletePrefix(context.Background(), rdb, prefix); err != nil {
			t.Errorf("testredis: cleaning up %s*: %v", prefix, err)
		}
	})
	return prefix
}

// DeletePrefix deletes every key that starts with prefix (SCAN + UNLINK).
// The prefix must not contain glob characters.
func DeletePrefix(ctx context.Context, rdb redis.Cmdable, prefix string) error {
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return rdb.Unlink(ctx, batch...).Err()
	}
	return nil
}

// Server is a private redis-server process listening on 127.0.0.1. Stop,
// Kill and Start may be called any number of times, in any order, from the
// test's goroutine: a restarted server keeps its port, directory and
// arguments, so data persisted with AOF or RDB survives a restart. The
// process is killed when the test ends.
type Server struct {
	// Addr is host:port, fixed for the server's whole life.
	Addr string
	// Dir is the server's working directory (dir, AOF and RDB files, and
	// its log, redis.log).
	Dir string

	t    testing.TB
	args []string // everything after the redis-server executable
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartServer starts a redis-server on a free 127.0.0.1 port with its own
// temporary directory, persistence off (--save "" --appendonly no) unless
// args override it, and waits until it answers PING. Extra args are
// appended to the command line, e.g. "--appendonly", "yes".
func StartServer(t testing.TB, args ...string) *Server {
	t.Helper()
	s := newServer(t)
	s.args = append([]string{
		"--port", portOf(s.Addr), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--logfile", filepath.Join(s.Dir, "redis.log"),
		"--save", "", "--appendonly", "no", "--daemonize", "no",
	}, args...)
	s.Start()
	return s
}

// StartSentinel starts a Redis Sentinel that monitors master under the
// name masterName (quorum 1) and waits until it knows the master's address.
func StartSentinel(t testing.TB, masterName string, master *Server) *Server {
	t.Helper()
	s := newServer(t)
	conf := filepath.Join(s.Dir, "sentinel.conf")
	host, port, _ := net.SplitHostPort(master.Addr)
	text := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nlogfile %s\nsentinel monitor %s %s %s 1\n",
		portOf(s.Addr), s.Dir, filepath.Join(s.Dir, "redis.log"), masterName, host, port)
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	s.args = []string{conf, "--sentinel"}
	s.Start()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	defer sc.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		addr, err := sc.GetMasterAddrByName(context.Background(), masterName).Result()
		if err == nil && len(addr) == 2 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("testredis: sentinel %s does not know master %q: %v", s.Addr, masterName, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartReplica starts a redis-server replicating master (REPLICAOF) and
// waits until its initial synchronisation is done (master_link_status:up).
func StartReplica(t testing.TB, master *Server, args ...string) *Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(master.Addr)
	r := StartServer(t, append([]string{"--replicaof", host, port}, args...)...)
	rdb := r.client()
	defer rdb.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		info, err := redisinfo.Read(context.Background(), rdb, "replication")
		if err == nil && info["master_link_status"] == "up" {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("testredis: replica %s of %s not in sync: %v\n%s%s", r.Addr, master.Addr, err, info, r.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SentinelURL returns the redis+sentinel:// URL of tokend for the
// sentinels monitoring masterName.
func SentinelURL(masterName string, sentinels ...*Server) string {
	addrs := make([]string, len(sentinels))
	for i, s := range sentinels {
		addrs[i] = s.Addr
	}
	return "redis+sentinel://" + strings.Join(addrs, ",") + "/0?master_name=" + masterName
}

// Failover makes the sentinel s fail masterName over to a replica, as an
// operator does for a planned upgrade (SENTINEL FAILOVER), and waits until
// the sentinel names the new master, the new master says it is one, and
// the old master has become its replica in sync. It returns the old and
// new master addresses. A failover refused because the sentinel has not
// yet seen a suitable replica (NOGOODSLAVE) is asked again. Settling takes
// about 10 s (the sentinel reconfigures the old master at its next INFO
// round) and longer on a loaded machine, where the sentinel may enter TILT
// mode and pause for 30 s; Failover gives it 2 minutes.
func (s *Server) Failover(masterName string) (from, to string) {
	s.t.Helper()
	ctx := context.Background()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr})
	defer sc.Close()
	addr := func() string {
		a, err := sc.GetMasterAddrByName(ctx, masterName).Result()
		if err != nil || len(a) != 2 {
			s.t.Fatalf("testredis: sentinel %s: master %q: %v", s.Addr, masterName, err)
		}
		return net.JoinHostPort(a[0], a[1])
	}
	from = addr()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := sc.Failover(ctx, masterName).Err()
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "NOGOODSLAVE") || time.Now().After(deadline) {
			s.t.Fatalf("testredis: SENTINEL FAILOVER %s: %v%s", masterName, err, s.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		if to = addr(); to != from {
			break
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("testredis: sentinel %s still names %s as master%s", s.Addr, from, s.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	role := func(addr, field, want string) bool {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		info, err := redisinfo.Read(ctx, rdb, "replication")
		return err == nil && info[field] == want
	}
	for !role(to, "role", "master") || !role(from, "master_link_status", "up") {
		if time.Now().After(deadline) {
			s.t.Fatalf("testredis: failover %s → %s did not settle%s", from, to, s.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return from, to
}

// StartCluster starts a Redis Cluster of n masters (no replicas) on
// 127.0.0.1, the slots split evenly, and waits until every node reports
// cluster_state:ok and knows all the others. Even one node (n = 1) refuses
// commands and scripts whose declared keys span slots (CROSSSLOT); with
// several, a script touching a key of another node fails too.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	ctx := context.Background()
	nodes := make([]*Server, n)
	buses := make([]string, n)
	for i := range nodes {
		bus := portOf(FreeAddr(t))
		buses[i] = bus
		nodes[i] = StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", bus, "--cluster-node-timeout", "5000")
	}
	first := redis.NewClient(&redis.Options{Addr: nodes[0].Addr})
	defer first.Close()
	for i, node := range nodes {
		rdb := redis.NewClient(&redis.Options{Addr: node.Addr})
		lo, hi := i*16384/n, (i+1)*16384/n-1
		err := rdb.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi).Err()
		rdb.Close()
		if err != nil {
			t.Fatalf("testredis: cluster addslots on %s: %v", node.Addr, err)
		}
		if i > 0 {
			host, port, _ := net.SplitHostPort(node.Addr)
			if err := first.Do(ctx, "CLUSTER", "MEET", host, port, buses[i]).Err(); err != nil {
				t.Fatalf("testredis: cluster meet %s: %v", node.Addr, err)
			}
		}
	}
	deadline := time.Now().Add(startTimeout)
	for _, node := range nodes {
		rdb := redis.NewClient(&redis.Options{Addr: node.Addr})
		for {
			info, err := rdb.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d\r", n)) {
				break
			}
			if time.Now().After(deadline) {
				rdb.Close()
				t.Fatalf("testredis: cluster node %s not ready: %v\n%s", node.Addr, err, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
		rdb.Close()
	}
	return nodes
}

// ClusterURL returns a redis+cluster:// URL naming every node.
func ClusterURL(nodes []*Server) string {
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

func newServer(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(t, "testredis: redis-server is not installed: %v", err)
	}
	s := &Server{Addr: FreeAddr(t), Dir: t.TempDir(), t: t}
	t.Cleanup(s.Kill)
	return s
}

// FreeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testredis: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// client returns a client of the server.
func (s *Server) client() *redis.Client { return redis.NewClient(&redis.Options{Addr: s.Addr}) }

// URL returns the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Running reports whether the process is up.
func (s *Server) Running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Start starts the process, if it is not running, and waits until it
// answers PING (which, after a restart with AOF, means it has loaded its
// data).
func (s *Server) Start() {
	s.t.Helper()
	if s.Running() {
		return
	}
	cmd := exec.Command("redis-server", s.args...)
	cmd.Dir = s.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testredis: starting redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done

	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		err := rdb.Ping(context.Background()).Err()
		if err == nil {
			return
		}
		select {
		case <-done:
			s.t.Fatalf("testredis: redis-server %s exited at start-up: %s%s", strings.Join(s.args, " "), out.String(), s.log())
		default:
		}
		if time.Now().After(deadline) {
			s.Kill()
			s.t.Fatalf("testredis: redis-server on %s not ready after %v: %v%s", s.Addr, startTimeout, err, s.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop shuts the server down gracefully (SIGTERM: Redis flushes its AOF)
// and waits for it to exit; after stopTimeout it is killed.
func (s *Server) Stop() {
	if !s.Running() {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.Kill()
	}
}

// Pause stops the process (SIGSTOP): it keeps its connections and
// accepts more, but reads and answers nothing until Resume, like a Redis
// stalled by a long command, a fork or a frozen VM. Commands sent meanwhile
// queue in its sockets and run when it resumes.
func (s *Server) Pause() {
	s.t.Helper()
	if !s.Running() {
		s.t.Fatalf("testredis: pausing %s, which is not running", s.Addr)
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatalf("testredis: SIGSTOP %s: %v", s.Addr, err)
	}
}

// Resume continues a paused process (SIGCONT).
func (s *Server) Resume() {
	s.t.Helper()
	if !s.Running() {
		return
	}
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatalf("testredis: SIGCONT %s: %v", s.Addr, err)
	}
}

// Kill kills the server abruptly (SIGKILL, like a crash) and waits for it
// to exit.
func (s *Server) Kill() {
	if !s.Running() {
		return
	}
	_ = s.cmd.Process.Kill() // SIGKILL ends a stopped process too
	<-s.done
}

// log returns the tail of the server's log file for failure messages.
func (s *Server) log() string {
	b, err := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\nredis.log:\n" + string(b)
}
