package main

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/internal/testredis"
)

// fakeServer listens on 127.0.0.1 and answers every connection with
// reply (nothing: it hangs up at once), like a port that is not Redis's.
func fakeServer(t *testing.T, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte(reply))
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// Redis at start-up: serve gives up after REDIS_STARTUP_TIMEOUT with one
// error that names the Redis and says what to check — nothing
// listening, a port that does not speak Redis, a password Redis refuses
// (at once: waiting cannot cure it) — never go-redis's own lines, never
// the password.
func TestRedisStartupTroubles(t *testing.T) {
	secured := testredis.StartServer(t)
	admin := redis.NewClient(&redis.Options{Addr: secured.Addr})
	if err := admin.ConfigSet(context.Background(), "requirepass", "the-right-one").Err(); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	for _, c := range []struct {
		name, url, hint string
		lasting         bool // waiting cannot cure it: one try, whatever REDIS_STARTUP_TIMEOUT says
	}{
		{"nothing listens", "redis://" + testredis.FreeAddr(t) + "/0", "nothing listens there", false},
		{"a server that hangs up", "redis://" + fakeServer(t, "") + "/0", "did not answer as Redis does", false},
		{"a web server", "redis://" + fakeServer(t, "HTTP/1.1 400 Bad Request\r\n\r\n") + "/0", "did not answer as Redis does", false},
		{"a wrong password", "redis://:not-the-one@" + secured.Addr + "/0", "Redis refused the credentials", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			wait := "300ms"
			if c.lasting {
				wait = "1h"
			}
			out, err := run(t, []string{"REDIS_URL=" + c.url, "REDIS_STARTUP_TIMEOUT=" + wait, "HTTP_ADDR=127.0.0.1:0"}, "", "serve")
			if err == nil || !strings.Contains(err.Error(), "REDIS_URL: cannot use the Redis at redis://") || !strings.Contains(err.Error(), c.hint) {
				t.Fatalf("serve: %v\n%s", err, out)
			}
			if c.lasting && strings.Contains(out, "trying again") {
				t.Errorf("tried again for a trouble waiting cannot cure:\n%s", out)
			}
			if strings.Contains(out, "go-redis") || strings.Contains(err.Error()+out, "not-the-one") {
				t.Errorf("go-redis's lines or the password in the output:\n%s", out)
			}
		})
	}
}

// Started before its Redis (compose starts both at once), serve waits,
// saying why once per try, and once Redis answers it serves, after one
// line naming that Redis: address, database, version, maxmemory-policy.
func TestRedisStartupWaits(t *testing.T) {
	srv := testredis.StartServer(t, "--maxmemory-policy", "noeviction")
	srv.Stop()
	addr := testredis.FreeAddr(t)
	out := &testkit.SyncBuffer{}
	cmd := exec.Command(tokendBinary(t), "serve")
	cmd.Env = procEnv("REDIS_URL="+srv.URL(), "REDIS_STARTUP_TIMEOUT=1m", "HTTP_ADDR="+addr, "PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{base: "http://" + addr, out: out, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.done) }()
	t.Cleanup(r.stop)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			select {
			case <-r.done:
				t.Fatalf("serve exited waiting for %s:\n%s", what, out.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s:\n%s", what, out.String())
			}
		}
	}
	waitFor("retry line", func() bool { return strings.Contains(out.String(), "Redis does not answer yet; trying again") })
	srv.Start()
	waitFor("readiness", func() bool {
		resp, err := http.Get(r.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	logs := out.String()
	if !strings.Contains(logs, "nothing listens there") || strings.Contains(logs, "go-redis") {
		t.Errorf("the waiting lines:\n%s", logs)
	}
	if strings.Count(logs, `"msg":"connected to Redis"`) != 1 || !strings.Contains(logs, `"redis":"redis://`+srv.Addr+`/0"`) ||
		!strings.Contains(logs, `"db":0`) || !strings.Contains(logs, `"version":"`) || !strings.Contains(logs, `"maxmemory_policy":"noeviction"`) {
		t.Errorf("the connected line:\n%s", logs)
	}
}
