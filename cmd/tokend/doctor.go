package main

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/store"
)

// doctorOptions are doctor's flags.
type doctorOptions struct {
	json          bool
	server        string // the running tokend to check; "" = JWT_ISSUER
	requireServer bool   // an unreachable server is a FAIL, not a WARN
}

func (c *cli) doctorCmd() *cobra.Command {
	var o doctorOptions
	cmd := &cobra.Command{
		Use:   "doctor [--json] [--server URL] [--require-server]",
		Short: "Check a deployment before trusting it: configuration, Redis, keys, bootstrap file, the running server",
		Long: `Check the deployment the configuration describes, with the checks
` + "`tokend serve`" + ` runs at start-up and more, and print one line per check:
OK, WARN (it works, at a cost the line names) or FAIL (serve refuses to
start, or runs broken or unsafe), each WARN and FAIL with its fix. Exit
status 1 when a check fails. Run it as the user serve runs as, with the
configuration serve uses (the same environment or --config file).

Checked: the configuration (every variable, as serve reads it); Redis
(reachable, version, maxmemory-policy, memory, persistence,
hash-max-listpack-*, clock, the user's access under REDIS_KEY_PREFIX);
JWT_KEYS_DIR (both kinds of key, file permissions, the schedule); the
TOKEND_BOOTSTRAP file (its users' and clients' passwords and secrets,
the committed development password); and, when it answers, the running
tokend at --server (default JWT_ISSUER): ready, its issuer, its JWKS.

--json prints {"version", "status", "counts", "checks": [{"check",
"status", "node", "message", "fix"}]} (docs/operations.md, "tokend
doctor").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := c.doctor(cmd.Context(), o)
			var err error
			if o.json {
				err = writeDoctorJSON(c.stdout, fs)
			} else {
				err = writeDoctorText(c.stdout, fs)
			}
			if err != nil {
				return err
			}
			if n := countLevel(fs, levelFail); n > 0 {
				return fmt.Errorf("doctor: %d of %d checks failed", n, len(fs))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the checks as one JSON object (for scripts)")
	cmd.Flags().StringVar(&o.server, "server", "", "base URL of the running tokend to check (default JWT_ISSUER)")
	cmd.Flags().BoolVar(&o.requireServer, "require-server", false, "fail when no tokend answers at --server (default: a warning)")
	return cmd
}

// doctor runs every check, in the order serve meets them at start-up.
func (c *cli) doctor(ctx context.Context, o doctorOptions) []finding {
	cfg, err := c.load()
	if err != nil {
		return []finding{newFail("config", err.Error(), "correct the variables it names (docs/configuration.md)").refusing()}
	}
	fs := []finding{newOK("config", c.configSummary(cfg))}
	quiet := slog.New(slog.DiscardHandler)

	// Redis, opened as serve opens it (one try, as the admin CLI).
	b, err := openBackend(ctx, cfg, quiet, nil, 0)
	if err != nil {
		fs = append(fs, newFail("redis", err.Error(), "start Redis, or correct REDIS_URL (docs/operations.md, \"Redis URL forms\")").refusing())
	} else {
		defer b.close()
		if b.redis == nil {
			fs = append(fs, embeddedStore)
		} else {
			fs = append(fs, newOK("redis", "connected to "+config.RedactURL(cfg.RedisURL)))
			_, rf := redisFindings(ctx, b.redis, cfg)
			fs = append(fs, rf...)
		}
	}

	kf, activeKid := doctorKeys(cfg)
	fs = append(fs, kf...)
	var st store.Store
	if b != nil {
		st = b.store
	}
	fs = append(fs, c.doctorBootstrap(ctx, cfg, st)...)
	base := o.server
	if base == "" {
		base = cfg.Issuer
	}
	return append(fs, doctorServer(ctx, cfg, strings.TrimRight(base, "/"), o.requireServer, activeKid)...)
}

// configSummary says what configuration was read, and the issuer and
// audience serve derives when they are not set.
func (c *cli) configSummary(cfg config.Config) string {
	from := "the environment"
	if c.configFile != "" {
		from += " and " + c.configFile
	}
	msg := fmt.Sprintf("%d variables read from %s; issuer %s", len(config.Variables()), from, cfg.Issuer)
	if cfg.IssuerDerived {
		msg += " (JWT_ISSUER is not set: derived from HTTP_ADDR; set it to the URL clients use when it differs)"
	}
	return msg
}

// doctorKeys checks JWT_KEYS_DIR as serve loads it (openKeyDir, and
// JWT_KEYS_GENERATE before it), judges it (keyFindings) and reports the
// schedule of both kinds. It returns the active signing key's id ("" if
// none), which the running server must publish.
func doctorKeys(cfg config.Config) ([]finding, string) {
	if cfg.KeysDir == "" {
		return []finding{ephemeralKeys()}, ""
	}
	ds, err := openKeyDir(cfg, nil)
	switch {
	case err == nil:
	case cfg.KeysGenerate && missingKinds(err):
		// serve makes the missing kinds before it loads the directory.
		if where := unwritable(cfg.KeysDir); where != "" {
			return []finding{newFail("keys", fmt.Sprintf("JWT_KEYS_DIR: %v, and serve cannot make the keys JWT_KEYS_GENERATE asks for: %s is not writable by this user", err, where),
				"make "+where+" writable by the user tokend runs as, or run `"+addKeysCommand(cfg.KeysDir)+"` as a user who can").refusing()}, ""
		}
		return []finding{newOK("keys", fmt.Sprintf("JWT_KEYS_DIR: %v; serve makes them at start-up (JWT_KEYS_GENERATE=true)", err))}, ""
	default:
		fix := keysFixText(err)
		if fix == "" {
			fix = "replace or remove the file it names (tokend keys generate|rotate make key files)"
		}
		return []finding{newFail("keys", "JWT_KEYS_DIR: "+err.Error(), fix).refusing()}, ""
	}
	fs := []finding{newOK("keys", fmt.Sprintf("JWT_KEYS_DIR %s holds a signing key and a refresh key, every key file loads", cfg.KeysDir))}
	fs = append(fs, keyFindings(cfg, ds)...)
	l, now := keyLifetimes(cfg), time.Now()
	sts, serr := keys.Signing.Status(cfg.KeysDir, keys.Signing.Timing(l), now)
	rsts, rerr := keys.Refresh.Status(cfg.KeysDir, keys.Refresh.Timing(l), now)
	if err := errors.Join(serr, rerr); err != nil { // the directory changed under us
		return append(fs, newFail("keys", "JWT_KEYS_DIR: "+err.Error(), "run doctor again")), ""
	}
	fs = append(fs,
		newOK("keys.signing", schedule(sts, now, func(k *keys.Key) string { return k.Alg + " key " + k.ID }, "signs")),
		newOK("keys.refresh", schedule(rsts, now, func(k *keys.RefreshKey) string { return "refresh key " + k.ID }, "is used for new sessions")))
	return fs, ds.Keys().Current().ID
}

// schedule says which key of a kind is active since when, and the next
// rotation: the pending key and when it takes over, or that none is.
func schedule[K any](sts []keys.Status[K], now time.Time, name func(K) string, does string) string {
	var active, pending []string
	for _, st := range sts {
		switch st.State {
		case keys.StateActive:
			active = append(active, fmt.Sprintf("%s %s since %s", name(st.Key), does, fmtTime(st.SignsFrom)))
		case keys.StatePending:
			pending = append(pending, fmt.Sprintf("%s %s from %s (in %s)", name(st.Key), does, fmtTime(st.SignsFrom), fmtIn(st.SignsFrom, now)))
		}
	}
	msg := strings.Join(active, "; ")
	if len(pending) == 0 {
		return msg + "; no rotation pending (`tokend keys rotate` starts one)"
	}
	return msg + "; next: " + strings.Join(pending, ", then ")
}

// unwritable returns the directory serve would have to write to make dir
// (dir, or its nearest existing parent) when this user may not write it;
// "" when it may.
func unwritable(dir string) string {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			if syscall.Access(d, 2 /* W_OK */) != nil {
				return d
			}
			return ""
		}
		if d == filepath.Dir(d) {
			return d
		}
	}
}

// doctorBootstrap checks the TOKEND_BOOTSTRAP file as serve does before it
// writes (loadBootstrap, planBootstrap) against st (nil when Redis could
// not be opened: then only the file itself), and the secrets of the
// confidential clients it lists that exist already (bootstrapSecrets).
func (c *cli) doctorBootstrap(ctx context.Context, cfg config.Config, st store.Store) []finding {
	const check = "bootstrap"
	if cfg.Bootstrap == "" {
		return []finding{newOK(check, "TOKEND_BOOTSTRAP is not set: serve creates no users or clients at start-up")}
	}
	f, err := loadBootstrap(cfg.Bootstrap)
	if err != nil {
		var fs []finding
		for _, e := range splitErrors(err) {
			fs = append(fs, newFail(check, e.Error(), "correct the file (docs/operations.md, \"Bootstrap users and clients at start-up\")").refusing())
		}
		return fs
	}
	if st == nil {
		return []finding{newOK(check, fmt.Sprintf("%s is well-formed; its users and clients are not checked without the store", cfg.Bootstrap))}
	}
	p, err := planBootstrap(ctx, f, st, adminHasher(cfg), c.environ, cfg.AllowDevSecrets)
	if err != nil {
		return []finding{newFail(check, err.Error(), "check that Redis answers")}
	}
	creates := 0
	for _, e := range slices.Concat(p.userExists, p.clientExists) {
		if !e {
			creates++
		}
	}
	fs := []finding{newOK(check, fmt.Sprintf("%s: %s and %s; serve creates the %d that do not exist yet, whose passwords and secrets were read and checked",
		cfg.Bootstrap, count(len(f.Users), "user"), count(len(f.Clients), "client"), creates))}
	fs = append(fs, p.findings...)
	return append(fs, bootstrapSecrets(ctx, p, st, c.environ)...)
}

// bootstrapSecrets checks the secret sources of the bootstrap file's
// confidential clients that exist already, where they can still be read
// (serve reads them only to create a client): a secret HTTP Basic would
// not carry unchanged (credential.ClientSecretProblem), or one that is no
// longer the client's (rotated with the CLI since), would fail the
// service that takes its secret from there.
func bootstrapSecrets(ctx context.Context, p *bootstrapPlan, st store.Store, environ []string) []finding {
	const check = "bootstrap.secrets"
	var out []finding
	for i, bc := range p.f.Clients {
		if bc.Public || !p.clientExists[i] {
			continue
		}
		sec, err := secretSource("secret of client "+bc.ID, bc.SecretFile, bc.SecretEnv, environ)
		if err != nil {
			continue // removed after the first start, as it may be
		}
		cl, err := st.Client(ctx, bc.ID)
		if err != nil {
			continue
		}
		from := cmp.Or(bc.SecretFile, "$"+bc.SecretEnv)
		switch {
		case credential.ClientSecretProblem(sec) != "":
			out = append(out, newWarn(check, fmt.Sprintf("client %s: the secret in %s: %s", bc.ID, from, credential.ClientSecretProblem(sec)),
				fmt.Sprintf("`tokend clients rotate-secret %s` makes one that works, and put it in %s", bc.ID, from)))
		case subtle.ConstantTimeCompare(credential.HashClientSecret(sec), cl.SecretHash) != 1:
			out = append(out, newWarn(check, fmt.Sprintf("client %s: the secret in %s is not the client's (rotated since?): a service reading it there is refused", bc.ID, from),
				fmt.Sprintf("put the client's current secret in %s, or remove it from there", from)))
		}
	}
	if len(out) == 0 {
		out = append(out, newOK(check, "the secrets of the existing confidential clients that can still be read are theirs and carried unchanged by HTTP Basic"))
	}
	return out
}

// splitErrors returns the errors err joins (errors.Join), or err alone.
func splitErrors(err error) []error {
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		return j.Unwrap()
	}
	return []error{err}
}

// doctorServer checks the tokend running at base: ready (/readyz), its
// metadata's issuer is JWT_ISSUER (RFC 8414 §3.3), its JWKS publishes the
// active signing key of JWT_KEYS_DIR (activeKid; "" when there is none to
// compare). Not reached: a WARN, or a FAIL with require.
func doctorServer(ctx context.Context, cfg config.Config, base string, require bool, activeKid string) []finding {
	hc := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return 0, nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, body, err
	}

	status, body, err := get("/.well-known/oauth-authorization-server")
	if err != nil {
		f := newWarn("server", fmt.Sprintf("no tokend answers at %s (%v): the running server's issuer and keys are not checked", base, err),
			"start tokend, or name where it runs with --server URL (--require-server makes this a failure)")
		if require {
			f.level = levelFail
		}
		return []finding{f}
	}
	var out []finding
	switch rs, rb, err := get("/readyz"); {
	case err == nil && rs == http.StatusOK:
		out = append(out, newOK("server", base+" answers and is ready"))
	case err == nil && rs == http.StatusServiceUnavailable:
		out = append(out, newFail("server", fmt.Sprintf("%s is not ready: /readyz answered %d %s", base, rs, strings.TrimSpace(string(rb))),
			"read its log: its Redis is unreachable or full"))
	default:
		out = append(out, newWarn("server", fmt.Sprintf("%s answers, but not /readyz as tokend does (%d, %v)", base, rs, err),
			"let /readyz through the proxy in front of it, for the load balancer's probes"))
	}

	var meta struct {
		Issuer string `json:"issuer"`
	}
	switch {
	case status != http.StatusOK || json.Unmarshal(body, &meta) != nil:
		out = append(out, newFail("server.issuer", fmt.Sprintf("%s/.well-known/oauth-authorization-server answered %d, not tokend's metadata", base, status),
			"check that --server (or JWT_ISSUER) names tokend, and that a proxy in front of it passes /.well-known/"))
	case meta.Issuer != cfg.Issuer:
		out = append(out, newFail("server.issuer", fmt.Sprintf("the server at %s says its issuer is %q, but JWT_ISSUER here is %q: resource servers configured with one refuse the tokens of the other", base, meta.Issuer, cfg.Issuer),
			"give every replica, and doctor, the same JWT_ISSUER: the URL clients use"))
	default:
		out = append(out, newOK("server.issuer", "its metadata names the issuer "+meta.Issuer))
	}

	status, body, err = get("/.well-known/jwks.json")
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err != nil || status != http.StatusOK || json.Unmarshal(body, &jwks) != nil || len(jwks.Keys) == 0 {
		return append(out, newFail("server.jwks", fmt.Sprintf("%s/.well-known/jwks.json did not answer with a key set (%d, %v)", base, status, err),
			"check that a proxy in front of tokend passes /.well-known/"))
	}
	kids := make([]string, len(jwks.Keys))
	for i, k := range jwks.Keys {
		kids[i] = k.Kid
	}
	switch {
	case activeKid == "":
		out = append(out, newOK("server.jwks", fmt.Sprintf("its JWKS holds %s (not compared: no JWT_KEYS_DIR here)", count(len(kids), "key"))))
	case !slices.Contains(kids, activeKid):
		out = append(out, newFail("server.jwks", fmt.Sprintf("the server does not publish the active signing key %s of JWT_KEYS_DIR (it publishes %s): it reads another key directory, or none", activeKid, strings.Join(kids, ", ")),
			"point every replica's JWT_KEYS_DIR at the same keys (docs/operations.md, \"Several replicas\")"))
	default:
		out = append(out, newOK("server.jwks", fmt.Sprintf("its JWKS holds %s, the active signing key %s among them", count(len(kids), "key"), activeKid)))
	}
	return out
}

// count says n things: "1 key", "2 keys".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// countLevel counts the findings of level l.
func countLevel(fs []finding, l level) int {
	n := 0
	for _, f := range fs {
		if f.level == l {
			n++
		}
	}
	return n
}

// doctorReport is the JSON shape of `tokend doctor --json`
// (docs/operations.md, "tokend doctor"): one object; status is the worst
// of the checks'.
type doctorReport struct {
	Version string         `json:"version"`
	Status  string         `json:"status"` // OK, WARN or FAIL
	Counts  map[string]int `json:"counts"` // "ok", "warn", "fail"
	Checks  []doctorCheck  `json:"checks"`
}

type doctorCheck struct {
	Check   string `json:"check"`
	Status  string `json:"status"`
	Node    string `json:"node,omitempty"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

func writeDoctorJSON(w io.Writer, fs []finding) error {
	r := doctorReport{Version: version, Status: levelOK.String(), Checks: []doctorCheck{},
		Counts: map[string]int{"ok": countLevel(fs, levelOK), "warn": countLevel(fs, levelWarn), "fail": countLevel(fs, levelFail)}}
	worst := levelOK
	for _, f := range fs {
		worst = max(worst, f.level)
		r.Checks = append(r.Checks, doctorCheck{Check: f.check, Status: f.level.String(), Node: f.node, Message: f.message, Fix: f.fix})
	}
	r.Status = worst.String()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeDoctorText prints a line per finding — status, check, the node on a
// Cluster, message — with its fix on the next line, then the counts.
func writeDoctorText(w io.Writer, fs []finding) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, f := range fs {
		check := f.check
		if f.node != "" {
			check += " [" + f.node + "]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.level, check, f.message)
		if f.fix != "" && f.level != levelOK {
			fmt.Fprintf(tw, "\t\tfix: %s\n", f.fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d OK, %d WARN, %d FAIL\n", countLevel(fs, levelOK), countLevel(fs, levelWarn), countLevel(fs, levelFail))
	return err
}
