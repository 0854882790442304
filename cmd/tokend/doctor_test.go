package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tokend/tokend/internal/testkit"
	"github.com/tokend/tokend/internal/testredis"
)

// report is the documented shape of `tokend doctor --json`
// (docs/operations.md, "tokend doctor"), written out here rather than
// taken from the code, so that a change of shape fails.
type report struct {
	Version string         `json:"version"`
	Status  string         `json:"status"`
	Counts  map[string]int `json:"counts"`
	Checks  []struct {
		Check   string `json:"check"`
		Status  string `json:"status"`
		Node    string `json:"node"`
		Message string `json:"message"`
		Fix     string `json:"fix"`
	} `json:"checks"`
}

// doctorJSON runs `tokend doctor --json` and checks its answer against
// the documented shape: nothing but the documented fields, status the
// worst of the checks', counts that add up, a fix for every WARN and
// FAIL, and an error (exit status 1) exactly when a check fails.
func doctorJSON(t *testing.T, env []string, args ...string) report {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot(strings.NewReader(""), &out, &errb, env)
	root.SetArgs(append([]string{"doctor", "--json"}, args...))
	err := root.ExecuteContext(context.Background())
	var r report
	dec := json.NewDecoder(bytes.NewReader(out.Bytes()))
	dec.DisallowUnknownFields()
	if derr := dec.Decode(&r); derr != nil || dec.More() {
		t.Fatalf("doctor --json printed what is not one report: %v\n%s\n%s", derr, out.String(), errb.String())
	}
	if r.Version != version {
		t.Errorf("version %q, want %q", r.Version, version)
	}
	counts := map[string]int{"ok": 0, "warn": 0, "fail": 0}
	for _, c := range r.Checks {
		if c.Status != "OK" && c.Status != "WARN" && c.Status != "FAIL" {
			t.Errorf("check %s: status %q", c.Check, c.Status)
		}
		counts[strings.ToLower(c.Status)]++
		if c.Check == "" || c.Message == "" || (c.Status != "OK" && c.Fix == "") {
			t.Errorf("a check without a name, a message or a fix: %+v", c)
		}
	}
	worst := "OK"
	switch {
	case counts["fail"] > 0:
		worst = "FAIL"
	case counts["warn"] > 0:
		worst = "WARN"
	}
	if r.Status != worst || fmt.Sprint(r.Counts) != fmt.Sprint(counts) {
		t.Errorf("status %s, counts %v; the checks make %s, %v", r.Status, r.Counts, worst, counts)
	}
	if (err != nil) != (counts["fail"] > 0) {
		t.Errorf("doctor's error %v with %d failed checks", err, counts["fail"])
	}
	return r
}

// has reports whether r has a check named check with status st and a
// message containing msg.
func (r report) has(check, st, msg string) bool {
	for _, c := range r.Checks {
		if c.Check == check && c.Status == st && strings.Contains(c.Message, msg) {
			return true
		}
	}
	return false
}

func (r report) String() string {
	var b strings.Builder
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "  %s %s [%s] %s | fix: %s\n", c.Status, c.Check, c.Node, c.Message, c.Fix)
	}
	return b.String()
}

// logLine is one JSON log record of serve.
type logLine struct {
	Level, Msg, Check string
}

// serveVerdict runs `tokend serve` with env (JSON logs) until it answers
// /healthz, then stops it, or until it returns: its log records and its
// error (nil when it started).
func serveVerdict(t *testing.T, env []string) ([]logLine, error) {
	t.Helper()
	addr := freeAddr(t)
	out := &testkit.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := newRoot(strings.NewReader(""), out, out, setEnv(env, "HTTP_ADDR="+addr, "LOG_FORMAT=json"))
	root.SetArgs([]string{"serve"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	var err error
	for started := false; !started; {
		select {
		case err = <-done:
			started = true // ended: refused
		case <-time.After(20 * time.Millisecond):
			if resp, gerr := http.Get("http://" + addr + "/healthz"); gerr == nil {
				resp.Body.Close()
				cancel()
				if serr := <-done; serr != nil {
					t.Fatalf("serve started, then: %v", serr)
				}
				started = true
			}
		}
	}
	var logs []logLine
	for sc := bufio.NewScanner(strings.NewReader(out.String())); sc.Scan(); {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			logs = append(logs, l)
		}
	}
	return logs, err
}

// agree runs doctor, then serve, with env and checks that they agree:
// when serve refuses to start, doctor has a FAIL whose message serve's
// error holds; when it starts, every WARN and FAIL doctor reports of what
// serve checks is a line of serve's log at WARN or ERROR, of the same
// check and message (up to its figures, which may have changed between
// the two). (doctor runs
// first: with JWT_KEYS_GENERATE serve changes the key directory.) The
// running server's checks are doctor's alone: --server points at nothing.
func agree(t *testing.T, env []string) (report, error) {
	t.Helper()
	r := doctorJSON(t, env, "--server", "http://"+freeAddr(t))
	logs, serr := serveVerdict(t, env)
	if serr != nil {
		found := false
		for _, c := range r.Checks {
			found = found || c.Status == "FAIL" && strings.Contains(serr.Error(), c.Message)
		}
		if !found {
			t.Errorf("serve refused to start, and doctor has no FAIL it names.\nserve: %v\ndoctor:\n%s", serr, r)
		}
		return r, serr
	}
	for _, c := range r.Checks {
		if c.Status == "OK" || c.Check == "server" || c.Check == "bootstrap.secrets" {
			continue
		}
		want := map[string]string{"WARN": "WARN", "FAIL": "ERROR"}[c.Status]
		words := strings.FieldsFunc(c.Message, func(r rune) bool { return r >= '0' && r <= '9' })[0]
		if !slices.ContainsFunc(logs, func(l logLine) bool { return l.Level == want && l.Check == c.Check && strings.HasPrefix(l.Msg, words) }) {
			t.Errorf("doctor: %s %s %q, but serve did not log it at %s:\n%v", c.Status, c.Check, c.Message, want, logs)
		}
	}
	return r, nil
}

// A deployment as docs/operations.md asks for: Redis with AOF and the
// listpack settings, a key directory, a bootstrap file. Doctor finds
// nothing wrong (but the running server it was not given), and serve
// starts.
func goodDeployment(t *testing.T, redisArgs ...string) (env []string, srv *testredis.Server) {
	t.Helper()
	srv = testredis.StartServer(t, append([]string{"--appendonly", "yes", "--hash-max-listpack-value", "256"}, redisArgs...)...)
	dir := t.TempDir()
	keysDir := filepath.Join(dir, "keys")
	if out, err := run(t, nil, "", "keys", "generate", "--dir", keysDir); err != nil {
		t.Fatalf("keys generate: %v %s", err, out)
	}
	return []string{"REDIS_URL=" + srv.URL(), "JWT_KEYS_DIR=" + keysDir, "PASSWORD_HASH_MEMORY=64", "PASSWORD_HASH_ITERATIONS=1",
		"REDIS_STARTUP_TIMEOUT=0"}, srv
}

func TestDoctorGoodDeployment(t *testing.T) {
	env, _ := goodDeployment(t)
	path := filepath.Join(t.TempDir(), "bootstrap.yaml")
	secret := strings.Repeat("s3cret-", 8)
	noErr(t, os.WriteFile(path, []byte("users:\n  - username: admin\n    password_env: ADMIN_PW\nclients:\n  - id: svc\n    grants: [client_credentials]\n    secret_env: SVC_SECRET\n"), 0o600))
	env = setEnv(env, "TOKEND_BOOTSTRAP="+path, "ADMIN_PW=a-long-admin-password", "SVC_SECRET="+secret)
	r, err := agree(t, env)
	if err != nil {
		t.Fatalf("serve: %v", err)
	}
	for _, c := range r.Checks {
		if c.Status != "OK" && c.Check != "server" {
			t.Errorf("a good deployment: %s %s %s", c.Status, c.Check, c.Message)
		}
	}
	for _, check := range []string{"config", "redis", "redis.version", "redis.maxmemory-policy", "redis.memory", "redis.persistence",
		"redis.listpack", "redis.clock", "redis.acl", "keys", "keys.permissions", "keys.signing", "keys.refresh", "bootstrap"} {
		if !r.has(check, "OK", "") {
			t.Errorf("no OK %s:\n%s", check, r)
		}
	}
	if !r.has("bootstrap", "OK", "serve creates the 2 that do not exist yet") {
		t.Errorf("before the first start:\n%s", r)
	}
	// After it: both exist; the client's secret source still holds its
	// secret. Once rotated, the source is stale.
	r = doctorJSON(t, env, "--server", "http://"+freeAddr(t))
	if !r.has("bootstrap", "OK", "the 0 that do not exist") || !r.has("bootstrap.secrets", "OK", "") {
		t.Errorf("after the first start:\n%s", r)
	}
	if out, err := run(t, env, "", "clients", "rotate-secret", "svc"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if r = doctorJSON(t, env, "--server", "http://"+freeAddr(t)); !r.has("bootstrap.secrets", "WARN", "client svc: the secret in $SVC_SECRET is not the client's") {
		t.Errorf("a rotated secret:\n%s", r)
	}
	if strings.Contains(r.String(), secret) || strings.Contains(r.String(), "a-long-admin-password") {
		t.Errorf("doctor printed a secret:\n%s", r)
	}
}

// Each thing serve refuses to start on is a FAIL in doctor, with the
// message serve stops with; each thing serve logs as a warning or an
// error is a WARN or a FAIL in doctor, with the message serve logs.
// Every Redis is a real one, set up the wrong way.
func TestDoctorAgreesWithServe(t *testing.T) {
	aclUser := func(srv *testredis.Server, rules ...any) string {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr})
		defer c.Close()
		noErr(t, c.Do(context.Background(), append([]any{"ACL", "SETUSER", "tokend", "on", ">pw"}, rules...)...).Err())
		return "REDIS_URL=redis://tokend:pw@" + srv.Addr + "/0"
	}
	keysWith := func(env []string, mode os.FileMode, glob string) []string {
		dir := envOf(env, "JWT_KEYS_DIR")
		files, _ := filepath.Glob(filepath.Join(dir, glob))
		for _, f := range files {
			noErr(t, os.Chmod(f, mode))
		}
		return env
	}
	bootstrap := func(env []string, yaml string, extra ...string) []string {
		path := filepath.Join(t.TempDir(), "bootstrap.yaml")
		noErr(t, os.WriteFile(path, []byte(yaml), 0o600))
		return setEnv(env, append([]string{"TOKEND_BOOTSTRAP=" + path}, extra...)...)
	}
	devPW := filepath.Join(t.TempDir(), "pw")
	noErr(t, os.WriteFile(devPW, []byte(devAdminPassword+"\n"), 0o600))
	base64Secret := filepath.Join(t.TempDir(), "secret")
	noErr(t, os.WriteFile(base64Secret, []byte("Xz3+9QkT2bHc/1LwVn8eR5yU0aDfGjKlMpNqOsTuVwY=\n"), 0o600))

	for _, tc := range []struct {
		name    string
		env     func() []string
		refused bool
		check   string // doctor's verdict that matters
		status  string
		msg     string
	}{
		{"an invalid variable", func() []string { e, _ := goodDeployment(t); return setEnv(e, "JWT_REFRESH_EXPIRES_IN=3x") },
			true, "config", "FAIL", "JWT_REFRESH_EXPIRES_IN"},
		{"Redis unreachable", func() []string { e, _ := goodDeployment(t); return setEnv(e, "REDIS_URL=redis://"+freeAddr(t)+"/0") },
			true, "redis", "FAIL", "nothing listens there"},
		{"an evicting Redis", func() []string { e, _ := goodDeployment(t, "--maxmemory-policy", "allkeys-lru"); return e },
			true, "redis.maxmemory-policy", "FAIL", `maxmemory-policy is "allkeys-lru"`},
		{"an evicting Redis, allowed", func() []string {
			e, _ := goodDeployment(t, "--maxmemory-policy", "allkeys-lru")
			return setEnv(e, "REDIS_ALLOW_EVICTION=true")
		}, false, "redis.maxmemory-policy", "FAIL", "serve starts anyway because REDIS_ALLOW_EVICTION=true"},
		{"a Redis out of memory", func() []string { e, _ := goodDeployment(t, "--maxmemory", "100kb"); return e },
			false, "redis.memory", "FAIL", "out of memory"},
		{"no persistence, listpack defaults", func() []string {
			e, _ := goodDeployment(t, "--appendonly", "no", "--hash-max-listpack-value", "64")
			return e
		}, false, "redis.persistence", "WARN", "keeps nothing on disk"},
		{"RDB snapshots only", func() []string { e, _ := goodDeployment(t, "--appendonly", "no", "--save", "900 1"); return e },
			false, "redis.persistence", "WARN", `RDB snapshots alone (save "900 1")`},
		{"AOF without fsync", func() []string { e, _ := goodDeployment(t, "--appendfsync", "no"); return e },
			false, "redis.persistence", "WARN", "appendfsync no"},
		{"small listpack values", func() []string { e, _ := goodDeployment(t, "--hash-max-listpack-value", "64"); return e },
			false, "redis.listpack", "WARN", "hash-max-listpack-value is 64"},
		{"few listpack entries", func() []string { e, _ := goodDeployment(t, "--hash-max-listpack-entries", "50"); return e },
			false, "redis.listpack", "WARN", "hash-max-listpack-entries is 50, below MAX_SESSIONS_PER_USER (100)"},
		{"an ACL on another prefix", func() []string {
			e, srv := goodDeployment(t)
			return setEnv(e, aclUser(srv, "~other:*", "&*", "+@all"))
		}, true, "redis.acl", "FAIL", `may not run tokend's scripts on keys under REDIS_KEY_PREFIX "tokend:"`},
		{"an ACL without INFO", func() []string {
			e, srv := goodDeployment(t)
			return setEnv(e, aclUser(srv, "~tokend:*", "&*", "+@all", "-info"))
		}, false, "redis.settings", "WARN", "could not read the Redis settings"},
		{"a read-only replica", func() []string {
			e, srv := goodDeployment(t)
			return setEnv(e, "REDIS_URL="+testredis.StartReplica(t, srv, "--appendonly", "yes", "--hash-max-listpack-value", "256").URL())
		}, true, "redis.acl", "FAIL", "read-only replica"},
		{"a missing refresh key", func() []string {
			e, _ := goodDeployment(t)
			files, _ := filepath.Glob(filepath.Join(envOf(e, "JWT_KEYS_DIR"), "*.refresh"))
			noErr(t, os.Remove(files[0]))
			return e
		}, true, "keys", "FAIL", "no refresh key"},
		{"a missing key directory, generated", func() []string {
			e, _ := goodDeployment(t)
			return setEnv(e, "JWT_KEYS_DIR="+filepath.Join(t.TempDir(), "new"), "JWT_KEYS_GENERATE=true")
		}, false, "keys", "OK", "serve makes them at start-up"},
		{"a refresh key readable by all", func() []string { e, _ := goodDeployment(t); return keysWith(e, 0o644, "*.refresh") },
			false, "keys.permissions", "FAIL", "is readable by every user"},
		{"a signing key readable by its group", func() []string { e, _ := goodDeployment(t); return keysWith(e, 0o640, "*.pem") },
			false, "keys.permissions", "WARN", "is readable by its group"},
		{"a key file others may write", func() []string { e, _ := goodDeployment(t); return keysWith(e, 0o602, "*.pem") },
			false, "keys.permissions", "FAIL", "is writable by every user"},
		{"the development password", func() []string {
			e, _ := goodDeployment(t)
			return bootstrap(e, "users:\n  - username: admin\n    password_file: "+devPW+"\n")
		}, true, "bootstrap.dev-password", "FAIL", "the development password committed"},
		{"the development password, allowed", func() []string {
			e, _ := goodDeployment(t)
			return bootstrap(e, "users:\n  - username: admin\n    password_file: "+devPW+"\n", "TOKEND_ALLOW_DEV_SECRETS=true")
		}, false, "bootstrap.dev-password", "WARN", "serve starts anyway"},
		{"a base64 client secret", func() []string {
			e, _ := goodDeployment(t)
			return bootstrap(e, "clients:\n  - id: svc\n    grants: [client_credentials]\n    secret_file: "+base64Secret+"\n")
		}, true, "bootstrap", "FAIL", "which every HTTP Basic client sends unchanged"},
		{"a misspelt bootstrap key", func() []string {
			e, _ := goodDeployment(t)
			return bootstrap(e, "users:\n  - username: a\n    pasword_file: x\n")
		}, true, "bootstrap", "FAIL", "field pasword_file not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := agree(t, tc.env())
			if (err != nil) != tc.refused {
				t.Errorf("serve refused: %v; want refused %v", err, tc.refused)
			}
			if tc.check != "" && !r.has(tc.check, tc.status, tc.msg) {
				t.Errorf("doctor has no %s %s with %q:\n%s", tc.status, tc.check, tc.msg, r)
			}
		})
	}
}

// The running server: found and consistent; an issuer that is not
// JWT_ISSUER, a JWKS without the active key of JWT_KEYS_DIR and a server
// that is not ready are FAILs; no server is a WARN, or a FAIL with
// --require-server.
func TestDoctorServer(t *testing.T) {
	env, _ := goodDeployment(t)
	base, _ := serveFor(t, env)
	env = setEnv(env, "JWT_ISSUER="+base)
	r := doctorJSON(t, env)
	for _, check := range []string{"server", "server.issuer", "server.jwks"} {
		if !r.has(check, "OK", "") {
			t.Errorf("no OK %s:\n%s", check, r)
		}
	}
	if !r.has("server.jwks", "OK", "the active signing key") {
		t.Errorf("the active key is not compared:\n%s", r)
	}
	if r := doctorJSON(t, setEnv(env, "JWT_ISSUER=https://auth.example.com"), "--server", base); !r.has("server.issuer", "FAIL", `says its issuer is "`+base+`"`) {
		t.Errorf("another issuer:\n%s", r)
	}
	otherKeys := filepath.Join(t.TempDir(), "keys")
	if out, err := run(t, nil, "", "keys", "generate", "--dir", otherKeys); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if r := doctorJSON(t, setEnv(env, "JWT_KEYS_DIR="+otherKeys)); !r.has("server.jwks", "FAIL", "does not publish the active signing key") {
		t.Errorf("another key directory:\n%s", r)
	}
	nobody := "http://" + freeAddr(t)
	if r := doctorJSON(t, env, "--server", nobody); !r.has("server", "WARN", "no tokend answers at "+nobody) {
		t.Errorf("no server:\n%s", r)
	}
	if r := doctorJSON(t, env, "--server", nobody, "--require-server"); !r.has("server", "FAIL", "no tokend answers") {
		t.Errorf("no server, required:\n%s", r)
	}

	// A server whose Redis is gone answers /readyz 503.
	unready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"status":"unavailable","store":"unreachable"}`)
			return
		}
		http.Redirect(w, r, base+r.URL.Path, http.StatusFound)
	}))
	defer unready.Close()
	if r := doctorJSON(t, env, "--server", unready.URL); !r.has("server", "FAIL", `"store":"unreachable"`) {
		t.Errorf("a server that is not ready:\n%s", r)
	}
}

// The text form: a line per check, its status first, the fix of a WARN
// or FAIL under it, the counts last, and exit status 1 on a FAIL.
func TestDoctorText(t *testing.T) {
	env, _ := goodDeployment(t, "--maxmemory-policy", "allkeys-lru")
	out, err := run(t, env, "", "doctor", "--server", "http://"+freeAddr(t))
	if err == nil || !strings.Contains(err.Error(), "checks failed") {
		t.Fatalf("doctor on an evicting Redis: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var sawFail, sawFix bool
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "FAIL  redis.maxmemory-policy "):
			sawFail = true
			sawFix = i+1 < len(lines) && strings.Contains(lines[i+1], "fix: set maxmemory-policy noeviction")
		case strings.HasPrefix(l, "OK  "), strings.HasPrefix(l, "WARN  "), strings.HasPrefix(l, "FAIL  "),
			strings.Contains(l, "fix: "), l == "":
		case i == len(lines)-1:
			if !strings.HasSuffix(l, "1 FAIL") {
				t.Errorf("last line %q", l)
			}
		default:
			t.Errorf("a line that is no check: %q", l)
		}
	}
	if !sawFail || !sawFix {
		t.Errorf("no FAIL line with its fix:\n%s", out)
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// setEnv returns env with each of kvs ("NAME=value") in place of the
// variable's earlier value (config.Load takes a variable's first).
func setEnv(env []string, kvs ...string) []string {
	out := slices.Clone(env)
	for _, kv := range kvs {
		name, _, _ := strings.Cut(kv, "=")
		out = slices.DeleteFunc(out, func(e string) bool { return strings.HasPrefix(e, name+"=") })
		out = append(out, kv)
	}
	return out
}

// envOf is the value of the variable name in env.
func envOf(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// TestDoctorChecksDocumented: the checks the code names (the first
// argument of newOK, newWarn and newFail, or a function's const check)
// are exactly those of docs/operations.md's table under "tokend doctor".
func TestDoctorChecksDocumented(t *testing.T) {
	code := map[string]bool{}
	files, err := filepath.Glob("*.go")
	noErr(t, err)
	named := regexp.MustCompile(`(?:newOK|newWarn|newFail)\("([a-z.-]+)"|const check = "([a-z.-]+)"`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		noErr(t, err)
		for _, m := range named.FindAllStringSubmatch(string(src), -1) {
			code[m[1]+m[2]] = true
		}
	}
	md, err := os.ReadFile("../../docs/operations.md")
	noErr(t, err)
	section := string(md)[strings.Index(string(md), "\n## `tokend doctor`\n"):]
	section = section[:strings.Index(section[1:], "\n## ")+1]
	docs := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z.-]+)` \\|").FindAllStringSubmatch(section, -1) {
		docs[m[1]] = true
	}
	if len(code) < 15 || fmt.Sprint(code) != fmt.Sprint(docs) {
		t.Errorf("the checks in the code: %v\nin docs/operations.md: %v", slices.Sorted(maps.Keys(code)), slices.Sorted(maps.Keys(docs)))
	}
}
