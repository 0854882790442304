package tokend_test

// Checks of the deployment files (docs/operations.md, "docker compose"): docker-compose.yml is loaded with
// the real compose-go loader, so what is checked here is what `docker compose`
// would run, and its tokend environment is tied to config.Variables() so the
// deployment cannot drift from the configuration code.

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/internal/testredis"
	"github.com/tokend/tokend/store/redisstore"
)

// composeDefaults are the values docker-compose.yml gives where they differ
// from tokend's own defaults (config.Variables()).
var composeDefaults = map[string]string{
	"REDIS_URL":         "redis://redis:6379/0",
	"JWT_KEYS_DIR":      "/keys",                      // the "keys" volume
	"JWT_KEYS_GENERATE": "true",                       // a first start fills it
	"TOKEND_BOOTSTRAP":  "/etc/tokend/bootstrap.yaml", // the tokend_bootstrap config
	"METRICS_ADDR":      ":9090",                      // metrics off the published port
}

func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	details := types.ConfigDetails{
		WorkingDir:  wd,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(wd, "docker-compose.yml")}},
		Environment: types.Mapping(maps.Clone(env)), // the loader adds COMPOSE_PROJECT_NAME
	}
	p, err := loader.LoadWithContext(context.Background(), details, func(o *loader.Options) {
		o.SetProjectName("tokend", true)
	})
	if err != nil {
		t.Fatalf("loading docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml has no service %q (has %v)", name, p.ServiceNames())
	}
	return s
}

// envValue returns the resolved value of a service's environment variable.
func envValue(t *testing.T, s types.ServiceConfig, name string) string {
	t.Helper()
	v, ok := s.Environment[name]
	if !ok {
		t.Fatalf("service %s does not set %s", s.Name, name)
	}
	if v == nil {
		t.Fatalf("service %s passes %s without a value or default", s.Name, name)
	}
	return *v
}

func TestComposeRedis(t *testing.T) {
	p := loadCompose(t, nil)
	redis := service(t, p, "redis")

	if !strings.HasPrefix(redis.Image, "redis:7") {
		t.Errorf("redis image = %q, want redis:7-alpine", redis.Image)
	}
	cmd := strings.Join(redis.Command, " ")
	for _, want := range []string{"--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction",
		"--hash-max-listpack-value " + strconv.Itoa(redisstore.ListpackValue)} {
		if !strings.Contains(cmd, want) {
			t.Errorf("redis command %q lacks %q (docs/operations.md)", cmd, want)
		}
	}
	if hc := redis.HealthCheck; hc == nil || hc.Disable || !slices.Contains(hc.Test, "redis-cli") || !slices.Contains(hc.Test, "ping") {
		t.Errorf("redis healthcheck = %+v, want redis-cli ping", redis.HealthCheck)
	}
	if !hasNamedVolume(p, redis, "/data") {
		t.Errorf("redis /data is not a named volume: %+v", redis.Volumes)
	}
}

func TestComposeTokend(t *testing.T) {
	p := loadCompose(t, nil)
	tokend := service(t, p, "tokend")

	if tokend.Build == nil {
		t.Error("tokend is not built from the Dockerfile (build: .)")
	}
	if dep, ok := tokend.DependsOn["redis"]; !ok || dep.Condition != types.ServiceConditionHealthy {
		t.Errorf("tokend depends_on = %+v, want redis: condition service_healthy", tokend.DependsOn)
	}
	if hc := tokend.HealthCheck; hc == nil || hc.Disable || !slices.Equal(hc.Test, []string{"CMD", "tokend", "healthcheck"}) {
		t.Errorf("tokend healthcheck = %+v, want [CMD tokend healthcheck]", tokend.HealthCheck)
	}
	// Published on the host's loopback only, and only the API: not the
	// metrics (METRICS_ADDR), not Redis.
	if len(tokend.Ports) != 1 || tokend.Ports[0].Published != "8080" || tokend.Ports[0].Target != 8080 || tokend.Ports[0].HostIP != "127.0.0.1" {
		t.Errorf("tokend ports = %+v, want 127.0.0.1:8080:8080", tokend.Ports)
	}
	if redis := service(t, p, "redis"); len(redis.Ports) != 0 {
		t.Errorf("redis ports = %+v, want none", redis.Ports)
	}
	// An operator may publish on every interface, saying so.
	wide := service(t, loadCompose(t, map[string]string{"TOKEND_PUBLISH_IP": "0.0.0.0"}), "tokend")
	if len(wide.Ports) != 1 || wide.Ports[0].HostIP != "0.0.0.0" {
		t.Errorf("TOKEND_PUBLISH_IP=0.0.0.0: ports %+v", wide.Ports)
	}
	if tokend.Restart != types.RestartPolicyUnlessStopped {
		t.Errorf("tokend restart = %q, want unless-stopped", tokend.Restart)
	}
	if !tokend.ReadOnly {
		t.Error("tokend root filesystem is not read_only")
	}
	if !slices.Contains(tokend.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("tokend security_opt = %v, want no-new-privileges:true", tokend.SecurityOpt)
	}
	if !hasNamedVolume(p, tokend, "/keys") {
		t.Errorf("tokend /keys is not a named volume: %+v", tokend.Volumes)
	}
	// docker stop must wait longer than tokend's own graceful shutdown.
	shutdown, err := config.ParseDuration(envValue(t, tokend, "SHUTDOWN_TIMEOUT"))
	if err != nil {
		t.Fatal(err)
	}
	if tokend.StopGracePeriod == nil || time.Duration(*tokend.StopGracePeriod) <= shutdown {
		t.Errorf("tokend stop_grace_period = %v, want more than SHUTDOWN_TIMEOUT (%v)", tokend.StopGracePeriod, shutdown)
	}
}

// TestComposeEnvironmentMatchesConfig ties the deployment to the config
// package: every variable is passed through, nothing else is, and the
// defaults are tokend's own (or a documented deployment choice).
func TestComposeEnvironmentMatchesConfig(t *testing.T) {
	tokend := service(t, loadCompose(t, nil), "tokend")

	known := map[string]bool{}
	var env []string
	for _, v := range config.Variables() {
		known[v.Name] = true
		if p, ok := tokend.Environment[v.Name]; !ok || p == nil {
			t.Errorf("docker-compose.yml does not pass %s to tokend (with a ${%s:-default})", v.Name, v.Name)
			continue
		}
		got := envValue(t, tokend, v.Name)
		want := v.Default
		if d, ok := composeDefaults[v.Name]; ok {
			want = d
		}
		if got != want {
			t.Errorf("%s defaults to %q in docker-compose.yml, want %q", v.Name, got, want)
		}
		env = append(env, v.Name+"="+got)
	}
	for name := range tokend.Environment {
		if !known[name] {
			t.Errorf("docker-compose.yml sets %s, which is not a configuration variable (typo?)", name)
		}
	}

	if t.Failed() {
		return
	}
	// The resolved environment is a valid configuration.
	c, err := config.Load("", env)
	if err != nil {
		t.Fatalf("docker-compose.yml environment does not load: %v", err)
	}
	if c.RefreshTTL != 24*time.Hour || c.RedisURL != composeDefaults["REDIS_URL"] {
		t.Errorf("compose config = %v", c)
	}
}

func TestComposeRefreshLifetimePassThrough(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
		ttl  time.Duration
	}{
		{nil, "24h", 24 * time.Hour},
		{map[string]string{"JWT_REFRESH_EXPIRES_IN": ""}, "24h", 24 * time.Hour},
		{map[string]string{"JWT_REFRESH_EXPIRES_IN": "7d"}, "7d", 7 * 24 * time.Hour},
		{map[string]string{"JWT_REFRESH_EXPIRES_IN": "36h"}, "36h", 36 * time.Hour},
	}
	for _, tt := range tests {
		tokend := service(t, loadCompose(t, tt.env), "tokend")
		got := envValue(t, tokend, "JWT_REFRESH_EXPIRES_IN")
		if got != tt.want {
			t.Errorf("env %v: JWT_REFRESH_EXPIRES_IN = %q, want %q", tt.env, got, tt.want)
		}
		c, err := config.Load("", []string{"JWT_REFRESH_EXPIRES_IN=" + got})
		if err != nil || c.RefreshTTL != tt.ttl {
			t.Errorf("env %v: RefreshTTL = %v, %v; want %v", tt.env, c.RefreshTTL, err, tt.ttl)
		}
	}

	// Every variable passes through, not only the refresh lifetime.
	env := map[string]string{}
	for _, v := range config.Variables() {
		env[v.Name] = "from-shell-" + v.Name
	}
	tokend := service(t, loadCompose(t, env), "tokend")
	for name, want := range env {
		if got := envValue(t, tokend, name); got != want {
			t.Errorf("%s = %q with %s=%q in the environment", name, got, name, want)
		}
	}

	// JWT_KEYS_DIR=/keys selects the keys volume.
	tokend = service(t, loadCompose(t, map[string]string{"JWT_KEYS_DIR": "/keys"}), "tokend")
	c, err := config.Load("", []string{"JWT_KEYS_DIR=" + envValue(t, tokend, "JWT_KEYS_DIR")})
	if err != nil || c.KeysDir != "/keys" || !hasNamedVolume(loadCompose(t, nil), tokend, "/keys") {
		t.Errorf("JWT_KEYS_DIR=/keys: KeysDir %q, %v; volumes %+v", c.KeysDir, err, tokend.Volumes)
	}
}

func hasNamedVolume(p *types.Project, s types.ServiceConfig, target string) bool {
	for _, v := range s.Volumes {
		if v.Target == target && v.Type == types.VolumeTypeVolume {
			if _, declared := p.Volumes[v.Source]; declared {
				return true
			}
		}
	}
	return false
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^FROM\s+(--platform=\S+\s+)?golang:\S+\s+AS\s+\w+`),
		// The build flags are the Makefile's (TestDockerfileBuildsTheReleaseBinary).
		regexp.MustCompile(`make build BIN=/out/tokend VERSION=`),
		regexp.MustCompile(`(?m)^USER\s+(65532|nonroot)`),
		regexp.MustCompile(`(?m)^EXPOSE\s+8080$`),
		regexp.MustCompile(`(?m)^ENTRYPOINT\s+\["tokend"\]$`),
		regexp.MustCompile(`(?m)^CMD\s+\["serve"\]$`),
	} {
		if !want.MatchString(df) {
			t.Errorf("Dockerfile does not match %s", want)
		}
	}

	ignore, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ignore), "\n") {
		switch strings.TrimSuffix(strings.TrimSpace(line), "/") {
		case "go.mod", "go.sum", "cmd", "*", "**", "*.go":
			t.Errorf(".dockerignore excludes %q, which the build needs", line)
		}
	}
}

// TestComposeFirstStart runs what `docker compose up` runs on a fresh
// checkout, without Docker: the tokend binary with the service's resolved
// environment, its config and secret files (the bootstrap file's container
// paths rewritten to their host files), an empty directory for the fresh
// "keys" volume, and the test Redis. It must come up with the bootstrap
// user and client and a signing key, with no exec step, and come up again
// with the same key.
func TestComposeFirstStart(t *testing.T) {
	p := loadCompose(t, nil)
	tokend := service(t, p, "tokend")
	dir := t.TempDir()

	// The bootstrap file, as mounted.
	bootstrap := envValue(t, tokend, "TOKEND_BOOTSTRAP")
	var bootstrapSrc string
	for _, c := range tokend.Configs {
		if c.Target == bootstrap {
			bootstrapSrc = p.Configs[c.Source].File
		}
	}
	if bootstrapSrc == "" {
		t.Fatalf("TOKEND_BOOTSTRAP=%s is not a config mounted into tokend: %+v", bootstrap, tokend.Configs)
	}
	data, err := os.ReadFile(bootstrapSrc)
	must(t, err)
	secretFiles := map[string]string{}
	for _, sc := range tokend.Secrets {
		target := sc.Target
		if target == "" {
			target = "/run/secrets/" + sc.Source
		}
		secretFiles[target] = p.Secrets[sc.Source].File
		data = bytes.ReplaceAll(data, []byte(target), []byte(p.Secrets[sc.Source].File))
	}
	hostBootstrap := filepath.Join(dir, "bootstrap.yaml")
	must(t, os.WriteFile(hostBootstrap, data, 0o600))
	var boot struct {
		Users []struct {
			Username     string `yaml:"username"`
			PasswordFile string `yaml:"password_file"`
		} `yaml:"users"`
		Clients []struct {
			ID     string   `yaml:"id"`
			Public bool     `yaml:"public"`
			Grants []string `yaml:"grants"`
		} `yaml:"clients"`
	}
	must(t, yaml.Unmarshal(data, &boot))
	if len(boot.Users) == 0 || len(boot.Clients) == 0 || !boot.Clients[0].Public || !slices.Contains(boot.Clients[0].Grants, "password") {
		t.Fatalf("the compose bootstrap file does not create a user and a public password client: %+v", boot)
	}
	pw, err := os.ReadFile(boot.Users[0].PasswordFile)
	must(t, err)
	password := strings.TrimRight(string(pw), "\r\n")

	// The keys volume, fresh.
	if !hasNamedVolume(p, tokend, envValue(t, tokend, "JWT_KEYS_DIR")) {
		t.Fatalf("JWT_KEYS_DIR=%s is not a named volume", envValue(t, tokend, "JWT_KEYS_DIR"))
	}
	keysDir := filepath.Join(dir, "keys")

	bin := filepath.Join(dir, "tokend")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/tokend").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr := "127.0.0.1:" + freePort(t)
	var env []string
	for name := range tokend.Environment {
		env = append(env, name+"="+envValue(t, tokend, name))
	}
	// The host's stand-ins for the container's addresses and paths (exec
	// keeps the last value of a repeated variable).
	env = append(env, "HTTP_ADDR="+addr, "REDIS_URL="+testredis.URL(t), "REDIS_KEY_PREFIX="+testredis.Prefix(t),
		"JWT_KEYS_DIR="+keysDir, "TOKEND_BOOTSTRAP="+hostBootstrap)

	// As committed, the admin password is the development one: tokend
	// refuses it, saying how to give one's own or to allow it for a trial.
	refused := exec.Command(bin, "serve")
	refused.Env = env
	if out, err := refused.CombinedOutput(); err == nil || !strings.Contains(string(out), "development password") ||
		!strings.Contains(string(out), "TOKEND_ADMIN_PASSWORD_FILE") || !strings.Contains(string(out), "TOKEND_ALLOW_DEV_SECRETS=true") {
		t.Fatalf("tokend started with the committed admin password: %v\n%s", err, out)
	}
	env = append(env, "TOKEND_ALLOW_DEV_SECRETS=true") // the trial the compose file's header shows

	start := func() (stop func() string) {
		var logs bytes.Buffer
		cmd := exec.Command(bin, "serve")
		cmd.Env, cmd.Stdout, cmd.Stderr = env, &logs, &logs
		must(t, cmd.Start())
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		stop = func() string {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			return logs.String()
		}
		for i := 0; ; i++ {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return stop
				}
			}
			select {
			case <-done:
				t.Fatalf("tokend exited:\n%s", logs.String())
			default:
			}
			if i > 300 {
				t.Fatalf("tokend did not become ready:\n%s", stop())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	signIn := func() {
		t.Helper()
		resp, err := http.PostForm("http://"+addr+"/oauth/token", url.Values{"grant_type": {"password"},
			"client_id": {boot.Clients[0].ID}, "username": {boot.Users[0].Username}, "password": {password}})
		must(t, err)
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("signing in as the bootstrap user: %s", resp.Status)
		}
	}
	kid := func() string {
		t.Helper()
		resp, err := http.Get("http://" + addr + "/.well-known/jwks.json")
		must(t, err)
		defer resp.Body.Close()
		var doc struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		must(t, json.NewDecoder(resp.Body).Decode(&doc))
		if len(doc.Keys) != 1 {
			t.Fatalf("JWKS has %d keys", len(doc.Keys))
		}
		return doc.Keys[0].Kid
	}

	stop := start()
	signIn()
	first := kid()
	logs := stop()
	if !strings.Contains(logs, "bootstrap: created user") || strings.Contains(logs, password) {
		t.Fatalf("first start's log:\n%s", logs)
	}
	stop = start()
	signIn()
	if got := kid(); got != first {
		t.Errorf("the signing key changed across restarts: %s, then %s", first, got)
	}
	if logs := stop(); !strings.Contains(logs, "bootstrap: user exists, left unchanged") {
		t.Errorf("second start's log:\n%s", logs)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
