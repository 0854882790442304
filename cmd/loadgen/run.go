package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tokend/tokend/credential"
)

// step performs one operation of a scenario for one virtual client.
type step func(ctx context.Context) error

// scenario prepares one virtual client's step.
type scenario struct {
	name    string
	what    string
	prepare func(ctx context.Context, r *rig, c *conn, id int) (step, error)
	inproc  bool // runs inside loadgen, not against tokend over HTTP
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
}

func run(ctx context.Context, o options) (*report, error) {
	r, err := setup(ctx, o)
	defer r.close()
	if err != nil {
		return nil, err
	}
	conns := newPool(r.base)
	defer conns.close()

	rep := &report{opts: o, Machine: machine(), Settings: settings{Connections: o.connections, Duration: o.duration.String(), Warmup: o.warmup.String(),
		ArgonMemoryKiB: o.argonMemory, ArgonIterations: o.argonIter, Alg: o.alg}}
	for _, name := range o.scenarios {
		sc := scenarios[name]
		var before float64
		if name == "password" {
			before = infoField(ctx, r.redis, "memory", "used_memory")
		}
		res, created, err := drive(ctx, r, conns, sc)
		if err != nil {
			return rep, fmt.Errorf("%s: %w", name, err)
		}
		if name == "password" && created > 0 {
			after := infoField(ctx, r.redis, "memory", "used_memory")
			rep.RedisBytesPerSession = (after - before) / float64(created)
			rep.SessionsMeasured = created
		}
		rep.Results = append(rep.Results, res)
		if name == "password" {
			alone, err := argonAlone(ctx, o)
			if err != nil {
				return rep, err
			}
			rep.Results = append(rep.Results, alone)
			if alone.RPS > 0 {
				rep.PasswordVsArgon = res.RPS / alone.RPS
			}
			if alone.LoadgenCPUPerReqUS > 0 && res.ServerCPUPerReqUS > 0 {
				rep.PasswordCPUVsArgon = (res.ServerCPUPerReqUS + res.RedisCPUPerReqUS) / alone.LoadgenCPUPerReqUS
			}
		}
	}
	if o.baseline != "" {
		runs, err := sideBySide(ctx, r)
		rep.SideBySide = runs
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// drive runs warm-up and the measured phase of one scenario. created
// counts successful operations over both phases (sessions, for password).
func drive(ctx context.Context, r *rig, conns *pool, sc scenario) (result, int64, error) {
	n := r.o.connections
	steps := make([]step, n)
	for i := range steps {
		var c *conn
		if conns != nil {
			c = conns.conn()
		}
		s, err := sc.prepare(ctx, r, c, i)
		if err != nil {
			return result{}, 0, fmt.Errorf("prepare client %d: %w", i, err)
		}
		steps[i] = s
	}
	var (
		measuring atomic.Bool
		ops, errs atomic.Int64
		created   atomic.Int64
		lastErr   atomic.Value
	)
	lat := make([][]time.Duration, n)
	for i := range lat {
		lat[i] = make([]time.Duration, 0, 1<<16)
	}
	total := r.o.warmup + r.o.duration
	cctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	progress("%s: %s, %d connections, %s warm-up + %s", sc.name, sc.what, n, r.o.warmup, r.o.duration)

	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for cctx.Err() == nil {
				t0 := time.Now()
				err := steps[i](cctx)
				d := time.Since(t0)
				if cctx.Err() != nil {
					return // cut off by the end of the run: not counted
				}
				if err == nil {
					created.Add(1)
				}
				if !measuring.Load() {
					continue
				}
				ops.Add(1)
				lat[i] = append(lat[i], d)
				if err != nil {
					errs.Add(1)
					lastErr.Store(err.Error())
				}
			}
		}(i)
	}

	var cpu0, rcpu0, m0, self0 float64
	var prof <-chan profileResult
	var haveCPU, haveMallocs bool
	var start time.Time
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	warm := time.After(r.o.warmup)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for loop := true; loop; {
		select {
		case <-warm:
			if !sc.inproc && r.tokend != nil {
				cpu0, haveCPU = cpuSeconds(r.tokend.Process.Pid)
				m0, haveMallocs = mallocs(r.base)
			}
			if !sc.inproc && r.redis != nil {
				rcpu0 = redisCPU(ctx, r.redis)
			}
			if !sc.inproc && r.debugBase != "" && r.o.profileDir != "" {
				prof = startProfile(cctx, r, sc.name)
			}
			self0 = selfCPU()
			start = time.Now()
			measuring.Store(true)
		case <-tick.C:
			if measuring.Load() {
				el := time.Since(start)
				progress("  %s %4.0fs/%.0fs  %8d req  %8.0f req/s  %d errors", sc.name, el.Seconds(), r.o.duration.Seconds(), ops.Load(), float64(ops.Load())/el.Seconds(), errs.Load())
			}
		case <-done:
			loop = false
		}
	}
	elapsed := time.Since(start)
	res := result{Scenario: sc.name, What: sc.what, Connections: n, Seconds: elapsed.Seconds(), Requests: ops.Load(), Errors: errs.Load(),
		ServerCPUPerReqUS: -1, AllocsPerReq: -1}
	if s, ok := lastErr.Load().(string); ok {
		res.LastError = s
	}
	if res.Requests > 0 {
		res.RPS = float64(res.Requests) / elapsed.Seconds()
		if haveCPU {
			if cpu1, ok := cpuSeconds(r.tokend.Process.Pid); ok {
				res.ServerCPUPerReqUS = (cpu1 - cpu0) / float64(res.Requests) * 1e6
			}
		}
		if haveMallocs {
			if m1, ok := mallocs(r.base); ok {
				res.AllocsPerReq = (m1 - m0) / float64(res.Requests)
			}
		}
		if !sc.inproc && r.redis != nil {
			res.RedisCPUPerReqUS = (redisCPU(ctx, r.redis) - rcpu0) / float64(res.Requests) * 1e6
		}
		res.LoadgenCPUPerReqUS = (selfCPU() - self0) / float64(res.Requests) * 1e6
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) > 0 {
		pct := func(p float64) float64 { return ms(all[int(p*float64(len(all)-1))]) }
		res.P50, res.P90, res.P99, res.Max = pct(0.50), pct(0.90), pct(0.99), ms(all[len(all)-1])
	}
	if prof != nil {
		p := <-prof
		if p.err != nil {
			return res, created.Load(), fmt.Errorf("cpu profile: %w", p.err)
		}
		res.Profile = p.file
		printProfileTop(r.o.tokend, p.file)
	}
	return res, created.Load(), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// argonAlone measures the configured argon2id verification alone, in this
// process, with the same concurrency bound tokend uses: the floor the
// password grant is compared against.
func argonAlone(ctx context.Context, o options) (result, error) {
	h := credential.NewHasher(credential.Argon2Params{Memory: uint32(o.argonMemory), Iterations: uint32(o.argonIter), Parallelism: 1, SaltLen: 16, KeyLen: 32}, 0)
	enc, err := h.Hash(ctx, benchPassword)
	if err != nil {
		return result{}, err
	}
	sc := scenario{name: "argon2id-alone", what: "argon2id Verify in-process (the password grant's floor)", inproc: true,
		prepare: func(ctx context.Context, _ *rig, _ *conn, _ int) (step, error) {
			return func(ctx context.Context) error {
				ok, err := h.Verify(ctx, benchPassword, enc)
				if err == nil && !ok {
					err = fmt.Errorf("verify failed")
				}
				return err
			}, nil
		}}
	r := &rig{o: o}
	res, _, err := drive(ctx, r, nil, sc)
	return res, err
}

// field extracts a string field from a flat JSON object without decoding
// the whole answer.
func field(body []byte, name string) string {
	key := []byte(`"` + name + `":"`)
	i := bytes.Index(body, key)
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func signIn(ctx context.Context, c *conn, id int, buf *bytes.Buffer) (at, rt string, err error) {
	form := "grant_type=password&client_id=" + benchPublic + "&username=" + benchUser(id) + "&password=" + benchPassword
	st, err := c.post(ctx, "/oauth/token", form, "", buf)
	if err != nil {
		return "", "", err
	}
	if st != 200 {
		return "", "", fmt.Errorf("sign in: %d %s", st, buf.String())
	}
	return field(buf.Bytes(), "access_token"), field(buf.Bytes(), "refresh_token"), nil
}

var scenarios = map[string]scenario{
	"password": {name: "password", what: "password grant (argon2id + new session)", prepare: func(ctx context.Context, r *rig, c *conn, id int) (step, error) {
		var buf bytes.Buffer
		return func(ctx context.Context) error { _, _, err := signIn(ctx, c, id, &buf); return err }, nil
	}},
	"refresh": {name: "refresh", what: "refresh chains (each client rotates its own latest token)", prepare: func(ctx context.Context, r *rig, c *conn, id int) (step, error) {
		var buf bytes.Buffer
		_, rt, err := signIn(ctx, c, id, &buf)
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error {
			st, err := c.post(ctx, "/oauth/token", "grant_type=refresh_token&client_id="+benchPublic+"&refresh_token="+rt, "", &buf)
			if err != nil {
				return err
			}
			if st != 200 {
				err := fmt.Errorf("refresh: %d %s", st, buf.String())
				if _, nrt, serr := signIn(ctx, c, id, &buf); serr == nil {
					rt = nrt // restart the chain
				}
				return err
			}
			rt = field(buf.Bytes(), "refresh_token")
			return nil
		}, nil
	}},
	"client_credentials": {name: "client_credentials", what: "client_credentials, ES256, client_secret_basic", prepare: func(ctx context.Context, r *rig, c *conn, id int) (step, error) {
		var buf bytes.Buffer
		auth := basic(benchConfidential, r.secret)
		return func(ctx context.Context) error {
			st, err := c.post(ctx, "/oauth/token", "grant_type=client_credentials&scope=read", auth, &buf)
			if err == nil && st != 200 {
				err = fmt.Errorf("client_credentials: %d %s", st, buf.String())
			}
			return err
		}, nil
	}},
	"introspect": {name: "introspect", what: "introspection of a user's access token (signature + session check)", prepare: func(ctx context.Context, r *rig, c *conn, id int) (step, error) {
		var buf bytes.Buffer
		at, _, err := signIn(ctx, c, id, &buf)
		if err != nil {
			return nil, err
		}
		auth := basic(benchConfidential, r.secret)
		form := "token=" + at
		return func(ctx context.Context) error {
			st, err := c.post(ctx, "/oauth/introspect", form, auth, &buf)
			if err == nil && (st != 200 || !bytes.Contains(buf.Bytes(), []byte(`"active":true`))) {
				err = fmt.Errorf("introspect: %d %s", st, buf.String())
			}
			return err
		}, nil
	}},
	"verify": verifyScenario,
}
