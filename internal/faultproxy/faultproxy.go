// Package faultproxy is a TCP proxy for tests that sits between a Redis
// client (tokend) and a Redis server and loses chosen replies: the command
// reaches Redis and runs, but its answer never reaches the client. That is
// the fault a retry must survive (docs/design.md, rotation): a 503 or a
// broken connection does not mean "not applied".
//
// The proxy reads the RESP protocol in both directions, so it knows which
// command each reply answers (replies come back in command order). A Rule
// decides, per reply, whether it passes, is cut (the reply is discarded and
// the client's connection closed, as when a network path or a Redis
// failover breaks it) or held (the reply is discarded and the connection
// goes silent, so the client times out). A nil Rule passes everything.
package faultproxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Action is what happens to one reply.
type Action int

const (
	// Pass delivers the reply.
	Pass Action = iota
	// Cut discards the reply and closes the client's connection (and the
	// proxy's connection to Redis).
	Cut
	// Hold discards the reply and every later reply on the connection; the
	// connection stays open until the client closes it, so the client sees
	// a read timeout.
	Hold
)

func (a Action) String() string {
	switch a {
	case Pass:
		return "pass"
	case Cut:
		return "cut"
	case Hold:
		return "hold"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// Rule decides the fate of the reply to cmd: the command name (upper case)
// followed by its arguments. The proxy calls it with its lock held, one
// call at a time, so a Rule may keep state without locking.
type Rule func(cmd []string) Action

// Commands returns a rule that applies action to the reply of every command
// named in names (case-insensitive) and passes the others.
func Commands(action Action, names ...string) Rule {
	return func(cmd []string) Action {
		for _, n := range names {
			if strings.EqualFold(cmd[0], n) {
				return action
			}
		}
		return Pass
	}
}

// Scripts returns a rule that applies action to the reply of every Lua
// script or function call (EVAL, EVALSHA, their _RO forms, FCALL,
// FCALL_RO) — every tokend operation that writes a session — and passes
// the others.
func Scripts(action Action) Rule {
	return Commands(action, "EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO")
}

// Fraction returns a rule that applies action to each reply that match
// selects with probability p, drawn from a generator seeded with seed
// (same seed, same choices for the same sequence of replies), and passes
// the others.
func Fraction(p float64, seed uint64, action Action, match Rule) Rule {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return func(cmd []string) Action {
		if match(cmd) == Pass {
			return Pass
		}
		if rng.Float64() < p {
			return action
		}
		return Pass
	}
}

// Proxy is a running proxy. Its methods are safe for concurrent use.
type Proxy struct {
	// Addr is the 127.0.0.1:port clients dial instead of Redis.
	Addr string

	target string
	ln     net.Listener

	mu     sync.Mutex
	rule   Rule
	lost   map[string]int // command name → replies not delivered
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	errs   []error
}

// Start starts a proxy to the Redis at target (host:port) on a free
// 127.0.0.1 port. It passes everything until SetRule, and is closed when
// the test ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln,
		lost: map[string]int{}, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("faultproxy: %v", err)
		}
	})
	return p
}

// URL returns the proxy's redis:// URL (database 0).
func (p *Proxy) URL() string { return "redis://" + p.Addr + "/0" }

// SetRule makes r decide the fate of every reply from now on; nil passes
// everything.
func (p *Proxy) SetRule(r Rule) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rule = r
}

// PassAll delivers every reply from now on (SetRule(nil)).
func (p *Proxy) PassAll() { p.SetRule(nil) }

// Lost returns how many replies were not delivered, per command name
// (upper case), and in total.
func (p *Proxy) Lost() (map[string]int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.lost))
	total := 0
	for k, v := range p.lost {
		out[k] = v
		total += v
	}
	return out, total
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines. It returns the first protocol error seen, if any (a
// reply the proxy could not parse would make it misattribute replies).
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return errors.Join(p.errs...)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close() // Redis is down: the client sees a refused-like failure
			continue
		}
		if !p.track(client, server) {
			client.Close()
			server.Close()
			return
		}
		p.wg.Add(1)
		go p.serve(client, server)
	}
}

// track registers the connections unless the proxy is closed.
func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

func (p *Proxy) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.errs = append(p.errs, err)
	}
}

// decide applies the rule to one reply and counts what it loses.
func (p *Proxy) decide(cmd []string) Action {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rule == nil {
		return Pass
	}
	a := p.rule(cmd)
	if a != Pass {
		p.lost[cmd[0]]++
	}
	return a
}

// serve relays one client connection. The client→Redis side queues each
// command before forwarding it; the Redis→client side pairs each reply
// with the oldest queued command.
func (p *Proxy) serve(client, server net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client, server)
	defer client.Close()
	defer server.Close()
	queue := make(chan []string, 1<<16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer server.Close()
		r := bufio.NewReader(client)
		var raw bytes.Buffer
		for {
			raw.Reset()
			cmd, err := readCommand(r, &raw)
			if err != nil {
				if !isClosed(err) {
					p.fail(fmt.Errorf("reading a command: %w", err))
				}
				return
			}
			queue <- cmd
			if _, err := server.Write(raw.Bytes()); err != nil {
				return
			}
		}
	}()
	defer func() { client.Close(); <-done }()

	r := bufio.NewReader(server)
	var raw bytes.Buffer
	silent := false
	for {
		raw.Reset()
		push, err := readReply(r, &raw)
		if err != nil {
			if !isClosed(err) {
				p.fail(fmt.Errorf("reading a reply: %w", err))
			}
			return
		}
		if silent {
			continue
		}
		if push { // out of band (RESP3 push): answers no command
			if _, err := client.Write(raw.Bytes()); err != nil {
				return
			}
			continue
		}
		var cmd []string
		select {
		case cmd = <-queue:
		default:
			p.fail(errors.New("a reply without a command"))
			return
		}
		switch p.decide(cmd) {
		case Pass:
			if _, err := client.Write(raw.Bytes()); err != nil {
				return
			}
		case Cut:
			return
		case Hold:
			silent = true
		}
	}
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "connection reset")
}

// maxBulk bounds one bulk string (Redis's own proto-max-bulk-len default).
const maxBulk = 512 << 20

// readLine reads one CRLF-terminated line into raw and returns it without
// the CRLF.
func readLine(r *bufio.Reader, raw *bytes.Buffer) ([]byte, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	raw.Write(line)
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("malformed line %q", line)
	}
	return line[:len(line)-2], nil
}

func length(line []byte) (int, error) {
	n, err := strconv.Atoi(string(line[1:]))
	if err != nil || n > maxBulk {
		return 0, fmt.Errorf("bad length in %q", line)
	}
	return n, nil
}

// readBulk reads n bytes and the CRLF after them into raw.
func readBulk(r *bufio.Reader, raw *bytes.Buffer, n int) ([]byte, error) {
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	raw.Write(b)
	return b[:n], nil
}

// readCommand reads one command (a RESP array of bulk strings, as every
// Redis client library sends) and returns its name, upper-cased, and
// arguments.
func readCommand(r *bufio.Reader, raw *bytes.Buffer) ([]string, error) {
	line, err := readLine(r, raw)
	if err != nil {
		return nil, err
	}
	if line[0] != '*' {
		return nil, fmt.Errorf("not a command array: %q", line)
	}
	n, err := length(line)
	if err != nil || n < 1 {
		return nil, fmt.Errorf("bad command array %q", line)
	}
	cmd := make([]string, n)
	for i := range cmd {
		line, err := readLine(r, raw)
		if err != nil {
			return nil, err
		}
		if line[0] != '$' {
			return nil, fmt.Errorf("command argument is not a bulk string: %q", line)
		}
		m, err := length(line)
		if err != nil || m < 0 {
			return nil, fmt.Errorf("bad bulk %q", line)
		}
		b, err := readBulk(r, raw, m)
		if err != nil {
			return nil, err
		}
		cmd[i] = string(b)
	}
	cmd[0] = strings.ToUpper(cmd[0])
	return cmd, nil
}

// readReply reads one complete RESP2 or RESP3 reply, with any attribute
// before it, into raw, and reports whether it is a push message.
func readReply(r *bufio.Reader, raw *bytes.Buffer) (push bool, err error) {
	for {
		line, err := readLine(r, raw)
		if err != nil {
			return false, err
		}
		if line[0] == '|' { // an attribute map precedes the reply itself
			if err := readAggregate(r, raw, line, 2); err != nil {
				return false, err
			}
			continue
		}
		return line[0] == '>', readRest(r, raw, line)
	}
}

// readValue reads one nested value.
func readValue(r *bufio.Reader, raw *bytes.Buffer) error {
	line, err := readLine(r, raw)
	if err != nil {
		return err
	}
	if line[0] == '|' {
		if err := readAggregate(r, raw, line, 2); err != nil {
			return err
		}
		return readValue(r, raw)
	}
	return readRest(r, raw, line)
}

// readRest reads what follows the first line of a value.
func readRest(r *bufio.Reader, raw *bytes.Buffer, line []byte) error {
	switch line[0] {
	case '+', '-', ':', '_', ',', '#', '(':
		return nil
	case '$', '!', '=':
		n, err := length(line)
		if err != nil || n < 0 {
			return err // $-1: the RESP2 null
		}
		_, err = readBulk(r, raw, n)
		return err
	case '*', '~', '>':
		return readAggregate(r, raw, line, 1)
	case '%':
		return readAggregate(r, raw, line, 2)
	}
	return fmt.Errorf("unknown RESP type in %q", line)
}

// readAggregate reads the per×n values of an array, set, push or map.
func readAggregate(r *bufio.Reader, raw *bytes.Buffer, line []byte, per int) error {
	n, err := length(line)
	if err != nil || n < 0 {
		return err // *-1: the RESP2 null array
	}
	for i := 0; i < n*per; i++ {
		if err := readValue(r, raw); err != nil {
			return err
		}
	}
	return nil
}
