package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// conn is one keep-alive HTTP/1.1 connection with a minimal client, like
// wrk's: it writes the request bytes and reads a Content-Length response.
// Go's net/http client costs several times more CPU per request, and on a
// 2-core machine every microsecond the load generator spends is taken
// from the server it measures.
type conn struct {
	addr string
	host string
	c    net.Conn
	r    *bufio.Reader
	req  []byte
}

// pool hands each virtual client its own connection.
type pool struct {
	addr, host string
	mu         sync.Mutex
	all        []*conn
}

func newPool(base string) *pool {
	host := strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://")
	return &pool{addr: host, host: host}
}

func (p *pool) conn() *conn {
	c := &conn{addr: p.addr, host: p.host}
	p.mu.Lock()
	p.all = append(p.all, c)
	p.mu.Unlock()
	return c
}

func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.all {
		if c.c != nil {
			c.c.Close()
		}
	}
}

// post sends one form POST and reads the answer into body (reset first).
// A broken connection is redialled once.
func (c *conn) post(ctx context.Context, path, form, auth string, body *bytes.Buffer) (int, error) {
	c.req = c.req[:0]
	c.req = append(c.req, "POST "...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, c.host...)
	c.req = append(c.req, "\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(form)), 10)
	if auth != "" {
		c.req = append(c.req, "\r\nAuthorization: "...)
		c.req = append(c.req, auth...)
	}
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, form...)
	for attempt := 0; ; attempt++ {
		status, err := c.roundTrip(ctx, body)
		if err == nil || attempt == 1 || ctx.Err() != nil {
			return status, err
		}
		if c.c != nil {
			c.c.Close()
			c.c = nil
		}
	}
}

func (c *conn) roundTrip(ctx context.Context, body *bytes.Buffer) (int, error) {
	if c.c == nil {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return 0, err
		}
		c.c, c.r = nc, bufio.NewReaderSize(nc, 16<<10)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.c.SetDeadline(dl.Add(10 * time.Second))
	}
	if _, err := c.c.Write(c.req); err != nil {
		return 0, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length, closeAfter := -1, false
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(h, []byte(":")); ok {
			v = bytes.TrimSpace(v)
			switch {
			case bytes.EqualFold(k, []byte("Content-Length")):
				length, err = strconv.Atoi(string(v))
				if err != nil {
					return 0, fmt.Errorf("bad Content-Length %q", v)
				}
			case bytes.EqualFold(k, []byte("Transfer-Encoding")):
				return 0, errors.New("chunked answers are not supported by loadgen")
			case bytes.EqualFold(k, []byte("Connection")) && bytes.EqualFold(v, []byte("close")):
				closeAfter = true
			}
		}
	}
	if length < 0 {
		if status != 204 && status != 304 {
			return 0, errors.New("answer without Content-Length")
		}
		length = 0
	}
	body.Reset()
	if _, err := body.ReadFrom(io.LimitReader(c.r, int64(length))); err != nil {
		return 0, err
	}
	if closeAfter {
		c.c.Close()
		c.c = nil
	}
	return status, nil
}
