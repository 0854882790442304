//lint:file-ignore S1025 TestRedaction checks fmt's %s verb itself, not a call of String

package config_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/config"
)

// documentedOrder is the order of docs/configuration.md's first variables followed by the tokend additions.
var documentedOrder = []string{
	"HTTP_ADDR", "REDIS_URL", "REDIS_KEY_PREFIX", "REDIS_ALLOW_EVICTION", "REDIS_STARTUP_TIMEOUT", "JWT_ISSUER", "JWT_AUDIENCE",
	"JWT_ACCESS_EXPIRES_IN", "JWT_REFRESH_EXPIRES_IN", "REFRESH_REUSE_WINDOW", "JWT_SIGNING_ALG", "JWT_KEYS_DIR", "JWT_KEYS_GENERATE",
	"JWKS_MAX_AGE", "JWT_KEYS_RELOAD_INTERVAL",
	"ALLOW_SIGNUP", "TOKEND_BOOTSTRAP", "TOKEND_ALLOW_DEV_SECRETS", "LOG_LEVEL", "LOG_FORMAT",
	"PASSWORD_HASH_MEMORY", "PASSWORD_HASH_ITERATIONS", "PASSWORD_HASH_PARALLELISM",
	"RATE_LIMIT_LOGIN_PER_ACCOUNT_IP", "RATE_LIMIT_LOGIN_PER_ACCOUNT", "RATE_LIMIT_LOGIN_PER_IP", "TRUSTED_PROXIES",
	"SHUTDOWN_TIMEOUT", "CLIENT_CACHE_TTL", "MAX_SESSIONS_PER_USER", "EVENTS_MAX_STREAMS_PER_CLIENT", "CORS_ALLOWED_ORIGINS",
	"DEBUG_ADDR", "METRICS_ADDR",
}

func defaults() config.Config {
	return config.Config{
		HTTPAddr:                ":8080",
		RedisKeyPrefix:          "tokend:",
		Issuer:                  "http://localhost:8080",
		Audience:                []string{"http://localhost:8080"},
		IssuerDerived:           true,
		AudienceDefaulted:       true,
		AccessTTL:               15 * time.Minute,
		RefreshTTL:              24 * time.Hour,
		SigningAlg:              "ES256",
		JWKSMaxAge:              5 * time.Minute,
		KeysReloadInterval:      15 * time.Second,
		LogLevel:                slog.LevelInfo,
		LogFormat:               "json",
		PasswordHashMemory:      19456,
		PasswordHashIterations:  2,
		PasswordHashParallelism: 1,
		LoginRateAccountIP:      config.Rate{N: 10, Period: 15 * time.Minute},
		LoginRateAccount:        config.Rate{N: 100, Period: 24 * time.Hour},
		LoginRateIP:             config.Rate{N: 100, Period: time.Minute},
		ShutdownTimeout:         15 * time.Second,
		ClientCacheTTL:          10 * time.Second,
		ReuseWindow:             30 * time.Second,
		MaxSessionsPerUser:      100,
		RedisStartupWait:        30 * time.Second,
		EventsMaxStreams:        64,
	}
}

// settle recomputes the defaults that depend on other variables (the
// issuer from HTTP_ADDR, the audience from the issuer) after a test edit.
func settle(c *config.Config) {
	if c.IssuerDerived {
		c.Issuer = config.DefaultIssuer(c.HTTPAddr)
	}
	if c.AudienceDefaulted {
		c.Audience = []string{c.Issuer}
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokend.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, file string, env ...string) config.Config {
	t.Helper()
	c, err := config.Load(file, env)
	if err != nil {
		t.Fatalf("Load(%q, %q): %v", file, env, err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	for name, env := range map[string][]string{
		"nil environ":         nil,
		"unrelated environ":   {"PATH=/usr/bin", "HOME=/root", "noequals", "=weird"},
		"empty values":        {"HTTP_ADDR=", "JWT_REFRESH_EXPIRES_IN=", "LOG_LEVEL=  ", "REDIS_URL="},
		"lower-case names":    {"jwt_refresh_expires_in=1h", "http_addr=:1"},
		"prefixed look-alike": {"TOKEND_HTTP_ADDR=:1", "XJWT_ISSUER=https://x"},
	} {
		t.Run(name, func(t *testing.T) {
			got := mustLoad(t, "", env...)
			if !reflect.DeepEqual(got, defaults()) {
				t.Errorf("got  %#v\nwant %#v", got, defaults())
			}
		})
	}
}

func TestVariablesTable(t *testing.T) {
	vars := config.Variables()
	var names []string
	for _, v := range vars {
		names = append(names, v.Name)
		if v.Form == "" || v.Description == "" {
			t.Errorf("%s: Form and Description must be documented", v.Name)
		}
	}
	if !reflect.DeepEqual(names, documentedOrder) {
		t.Errorf("Variables() order\n got %q\nwant %q", names, documentedOrder)
	}
	// Every default is printed back verbatim by Settings: the table, the
	// parser and the formatter agree.
	settings := mustLoad(t, "").Settings()
	if len(settings) != len(vars) {
		t.Fatalf("%d settings for %d variables", len(settings), len(vars))
	}
	for i, v := range vars {
		if v.Name == "JWT_ISSUER" || v.Name == "JWT_AUDIENCE" {
			continue // unset: derived from HTTP_ADDR (TestDerivedIssuerAndAudience)
		}
		if settings[i].Name != v.Name || settings[i].Value != v.Default {
			t.Errorf("setting %d = %+v, want %s=%q", i, settings[i], v.Name, v.Default)
		}
	}
	// Variables returns a copy.
	vars[0].Name = "CHANGED"
	if config.Variables()[0].Name != "HTTP_ADDR" {
		t.Error("Variables() exposes the internal table")
	}
}

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		env  string
		edit func(*config.Config)
	}{
		{"HTTP_ADDR=127.0.0.1:9090", func(c *config.Config) { c.HTTPAddr = "127.0.0.1:9090" }},
		{"HTTP_ADDR=[::1]:0", func(c *config.Config) { c.HTTPAddr = "[::1]:0" }},
		{"HTTP_ADDR=localhost:65535", func(c *config.Config) { c.HTTPAddr = "localhost:65535" }},
		{"REDIS_URL=redis://localhost:6379/0", func(c *config.Config) { c.RedisURL = "redis://localhost:6379/0" }},
		{"REDIS_URL=rediss://:pw@h:6380", func(c *config.Config) { c.RedisURL = "rediss://:pw@h:6380" }},
		{"REDIS_URL=redis+sentinel://s1:26379,s2:26379/mymaster", func(c *config.Config) { c.RedisURL = "redis+sentinel://s1:26379,s2:26379/mymaster" }},
		{"REDIS_URL=redis+cluster://n1:7000,n2:7001", func(c *config.Config) { c.RedisURL = "redis+cluster://n1:7000,n2:7001" }},
		{"REDIS_URL=rediss+sentinel://s1:26379/0?master_name=m", func(c *config.Config) { c.RedisURL = "rediss+sentinel://s1:26379/0?master_name=m" }},
		{"REDIS_URL=unix:///run/redis.sock", func(c *config.Config) { c.RedisURL = "unix:///run/redis.sock" }},
		{"REDIS_URL=REDIS://H:1", func(c *config.Config) { c.RedisURL = "REDIS://H:1" }},
		{"REDIS_KEY_PREFIX=app:auth:", func(c *config.Config) { c.RedisKeyPrefix = "app:auth:" }},
		{"JWT_ISSUER=https://auth.example.com", func(c *config.Config) { c.Issuer, c.IssuerDerived = "https://auth.example.com", false }},
		{"JWT_ISSUER=https://example.com/tenants/a", func(c *config.Config) { c.Issuer, c.IssuerDerived = "https://example.com/tenants/a", false }},
		{"JWT_AUDIENCE=api", func(c *config.Config) { c.Audience, c.AudienceDefaulted = []string{"api"}, false }},
		{"JWT_AUDIENCE=api,billing", func(c *config.Config) { c.Audience, c.AudienceDefaulted = []string{"api", "billing"}, false }},
		{"JWT_AUDIENCE= api  billing,, https://x.example ,api ", func(c *config.Config) {
			c.Audience, c.AudienceDefaulted = []string{"api", "billing", "https://x.example"}, false
		}},
		{"JWT_ACCESS_EXPIRES_IN=5m", func(c *config.Config) { c.AccessTTL = 5 * time.Minute }},
		{"JWT_ACCESS_EXPIRES_IN=24h", func(c *config.Config) { c.AccessTTL = 24 * time.Hour }},
		{"JWT_REFRESH_EXPIRES_IN=7d", func(c *config.Config) { c.RefreshTTL = 7 * 24 * time.Hour }},
		{"JWT_REFRESH_EXPIRES_IN=1d12h", func(c *config.Config) { c.RefreshTTL = 36 * time.Hour }},
		{"JWT_REFRESH_EXPIRES_IN=1.5d", func(c *config.Config) { c.RefreshTTL = 36 * time.Hour }},
		{"JWT_REFRESH_EXPIRES_IN=720h", func(c *config.Config) { c.RefreshTTL = 30 * 24 * time.Hour }},
		{"JWT_REFRESH_EXPIRES_IN=15m", func(c *config.Config) { c.RefreshTTL = 15 * time.Minute }}, // equal to access: allowed
		{"JWT_SIGNING_ALG=EdDSA", func(c *config.Config) { c.SigningAlg = "EdDSA" }},
		{"JWT_SIGNING_ALG=rs256", func(c *config.Config) { c.SigningAlg = "RS256" }},
		{"JWT_SIGNING_ALG=es256", func(c *config.Config) { c.SigningAlg = "ES256" }},
		{"JWT_KEYS_DIR=/keys", func(c *config.Config) { c.KeysDir = "/keys" }},
		{"JWKS_MAX_AGE=1s", func(c *config.Config) { c.JWKSMaxAge = time.Second }},
		{"JWKS_MAX_AGE=1h", func(c *config.Config) { c.JWKSMaxAge = time.Hour }},
		{"JWT_KEYS_RELOAD_INTERVAL=100ms", func(c *config.Config) { c.KeysReloadInterval = 100 * time.Millisecond }},
		{"JWT_KEYS_RELOAD_INTERVAL=1m", func(c *config.Config) { c.KeysReloadInterval = time.Minute }},
		{"ALLOW_SIGNUP=true", func(c *config.Config) { c.AllowSignup = true }},
		{"ALLOW_SIGNUP=1", func(c *config.Config) { c.AllowSignup = true }},
		{"ALLOW_SIGNUP=Yes", func(c *config.Config) { c.AllowSignup = true }},
		{"ALLOW_SIGNUP=off", func(c *config.Config) { c.AllowSignup = false }},
		{"LOG_LEVEL=debug", func(c *config.Config) { c.LogLevel = slog.LevelDebug }},
		{"LOG_LEVEL=WARN", func(c *config.Config) { c.LogLevel = slog.LevelWarn }},
		{"LOG_LEVEL=warning", func(c *config.Config) { c.LogLevel = slog.LevelWarn }},
		{"LOG_LEVEL=error", func(c *config.Config) { c.LogLevel = slog.LevelError }},
		{"LOG_FORMAT=text", func(c *config.Config) { c.LogFormat = "text" }},
		{"LOG_FORMAT=JSON", func(c *config.Config) { c.LogFormat = "json" }},
		{"PASSWORD_HASH_MEMORY=65536", func(c *config.Config) { c.PasswordHashMemory = 65536 }},
		{"PASSWORD_HASH_MEMORY=8", func(c *config.Config) { c.PasswordHashMemory = 8 }},
		{"PASSWORD_HASH_ITERATIONS=3", func(c *config.Config) { c.PasswordHashIterations = 3 }},
		{"PASSWORD_HASH_PARALLELISM=4", func(c *config.Config) { c.PasswordHashParallelism = 4 }},
		{"PASSWORD_HASH_PARALLELISM=255", func(c *config.Config) { c.PasswordHashParallelism = 255 }},
		{"RATE_LIMIT_LOGIN_PER_ACCOUNT=5/10m", func(c *config.Config) { c.LoginRateAccount = config.Rate{N: 5, Period: 10 * time.Minute} }},
		{"RATE_LIMIT_LOGIN_PER_ACCOUNT=20/1d", func(c *config.Config) { c.LoginRateAccount = config.Rate{N: 20, Period: 24 * time.Hour} }},
		{"RATE_LIMIT_LOGIN_PER_ACCOUNT=0", func(c *config.Config) { c.LoginRateAccount = config.Rate{} }},
		{"REDIS_ALLOW_EVICTION=yes", func(c *config.Config) { c.RedisAllowEviction = true }},
		{"JWT_KEYS_GENERATE=true", func(c *config.Config) { c.KeysGenerate = true }},
		{"TOKEND_BOOTSTRAP=/etc/tokend/bootstrap.yaml", func(c *config.Config) { c.Bootstrap = "/etc/tokend/bootstrap.yaml" }},
		{"TOKEND_ALLOW_DEV_SECRETS=true", func(c *config.Config) { c.AllowDevSecrets = true }},
		{"RATE_LIMIT_LOGIN_PER_ACCOUNT_IP=3/1h", func(c *config.Config) { c.LoginRateAccountIP = config.Rate{N: 3, Period: time.Hour} }},
		{"RATE_LIMIT_LOGIN_PER_IP=0/1m", func(c *config.Config) { c.LoginRateIP = config.Rate{} }},
		{"RATE_LIMIT_LOGIN_PER_IP= 300 / 1m ", func(c *config.Config) { c.LoginRateIP = config.Rate{N: 300, Period: time.Minute} }},
		{"TRUSTED_PROXIES=10.0.0.1, 192.168.0.0/16 2001:db8::/32", func(c *config.Config) {
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("2001:db8::/32")}
		}},
		{"TRUSTED_PROXIES=::ffff:10.1.2.3,10.9.9.9/8", func(c *config.Config) {
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("10.0.0.0/8")}
		}},
		{"SHUTDOWN_TIMEOUT=1m", func(c *config.Config) { c.ShutdownTimeout = time.Minute }},
		{"SHUTDOWN_TIMEOUT=  30s ", func(c *config.Config) { c.ShutdownTimeout = 30 * time.Second }},
		{"CLIENT_CACHE_TTL=1m", func(c *config.Config) { c.ClientCacheTTL = time.Minute }},
		{"CLIENT_CACHE_TTL=0", func(c *config.Config) { c.ClientCacheTTL = 0 }},
		{"MAX_SESSIONS_PER_USER=1", func(c *config.Config) { c.MaxSessionsPerUser = 1 }},
		{"MAX_SESSIONS_PER_USER=10000", func(c *config.Config) { c.MaxSessionsPerUser = 10000 }},
		{"REFRESH_REUSE_WINDOW=0", func(c *config.Config) { c.ReuseWindow = 0 }},
		{"REFRESH_REUSE_WINDOW=10s", func(c *config.Config) { c.ReuseWindow = 10 * time.Second }},
		{"REFRESH_REUSE_WINDOW=5m", func(c *config.Config) { c.ReuseWindow = 5 * time.Minute }},
		{"CORS_ALLOWED_ORIGINS=https://app.example.com, http://localhost:3000 https://app.example.com", func(c *config.Config) {
			c.CORSAllowedOrigins = []string{"https://app.example.com", "http://localhost:3000"}
		}},
		{"DEBUG_ADDR=127.0.0.1:6060", func(c *config.Config) { c.DebugAddr = "127.0.0.1:6060" }},
		{"METRICS_ADDR=:9090", func(c *config.Config) { c.MetricsAddr = ":9090" }},
		{"REDIS_STARTUP_TIMEOUT=2m", func(c *config.Config) { c.RedisStartupWait = 2 * time.Minute }},
		{"REDIS_STARTUP_TIMEOUT=0", func(c *config.Config) { c.RedisStartupWait = 0 }},
		{"EVENTS_MAX_STREAMS_PER_CLIENT=1", func(c *config.Config) { c.EventsMaxStreams = 1 }},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			want := defaults()
			tt.edit(&want)
			settle(&want)
			got := mustLoad(t, "", tt.env)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %#v\nwant %#v", got, want)
			}
		})
		name, _, _ := strings.Cut(tt.env, "=")
		covered[name] = true
	}
	for _, v := range config.Variables() {
		if !covered[v.Name] {
			t.Errorf("no override test for %s", v.Name)
		}
	}
}

func TestFirstOccurrenceWins(t *testing.T) {
	c := mustLoad(t, "", "LOG_LEVEL=debug", "LOG_LEVEL=error")
	if c.LogLevel != slog.LevelDebug {
		t.Errorf("LogLevel = %v, want the first occurrence (debug) as with os.Getenv", c.LogLevel)
	}
}

const fullFile = `
# every key, lower case
http_addr: 127.0.0.1:9000
redis_url: redis://redis:6379/1
redis_key_prefix: "svc:"
jwt_issuer: https://auth.example.com
jwt_audience: [api, billing]
jwt_access_expires_in: 10m
jwt_refresh_expires_in: 7d
jwt_signing_alg: EdDSA
jwt_keys_dir: /etc/tokend/keys
jwks_max_age: 10m
jwt_keys_reload_interval: 30s
allow_signup: true
log_level: debug
log_format: text
password_hash_memory: 65536
password_hash_iterations: 3
password_hash_parallelism: 2
rate_limit_login_per_account: 5/10m
rate_limit_login_per_ip: 300/1m
trusted_proxies: 10.0.0.0/8, fd00::/8
shutdown_timeout: 30s
`

func fullFileConfig() config.Config {
	return config.Config{
		HTTPAddr:                "127.0.0.1:9000",
		RedisURL:                "redis://redis:6379/1",
		RedisKeyPrefix:          "svc:",
		Issuer:                  "https://auth.example.com",
		Audience:                []string{"api", "billing"},
		AccessTTL:               10 * time.Minute,
		RefreshTTL:              7 * 24 * time.Hour,
		SigningAlg:              "EdDSA",
		KeysDir:                 "/etc/tokend/keys",
		JWKSMaxAge:              10 * time.Minute,
		KeysReloadInterval:      30 * time.Second,
		AllowSignup:             true,
		LogLevel:                slog.LevelDebug,
		LogFormat:               "text",
		PasswordHashMemory:      65536,
		PasswordHashIterations:  3,
		PasswordHashParallelism: 2,
		LoginRateAccountIP:      config.Rate{N: 10, Period: 15 * time.Minute},
		LoginRateAccount:        config.Rate{N: 5, Period: 10 * time.Minute},
		LoginRateIP:             config.Rate{N: 300, Period: time.Minute},
		TrustedProxies:          []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
		ShutdownTimeout:         30 * time.Second,
		ClientCacheTTL:          10 * time.Second,
		ReuseWindow:             30 * time.Second,
		MaxSessionsPerUser:      100,
		RedisStartupWait:        30 * time.Second,
		EventsMaxStreams:        64,
	}
}

func TestFile(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       config.Config
	}{
		{"every key, lower case", fullFile, fullFileConfig()},
		{"every key, variable names", upperKeys(fullFile), fullFileConfig()},
		{"empty file", "", defaults()},
		{"comments only", "# nothing\n", defaults()},
		{"null and empty values fall back to defaults", "http_addr:\njwt_issuer: ''\nlog_level: ~\n", defaults()},
		{"audience as a string", "jwt_audience: api billing\n", func() config.Config {
			c := defaults()
			c.Audience, c.AudienceDefaulted = []string{"api", "billing"}, false
			return c
		}()},
		{"unquoted :port", "http_addr: :9999\n", func() config.Config {
			c := defaults()
			c.HTTPAddr = ":9999"
			settle(&c)
			return c
		}()},
		{"yes is a YAML 1.2 string, still a boolean", "allow_signup: yes\n", func() config.Config {
			c := defaults()
			c.AllowSignup = true
			return c
		}()},
		{"number as float", "password_hash_memory: 2.048e4\n", func() config.Config {
			c := defaults()
			c.PasswordHashMemory = 20480
			return c
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustLoad(t, writeFile(t, tt.yaml))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

// upperKeys upper-cases the key of every "key: value" line.
func upperKeys(y string) string {
	lines := strings.Split(y, "\n")
	for i, l := range lines {
		if k, v, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "#") {
			lines[i] = strings.ToUpper(k) + ":" + v
		}
	}
	return strings.Join(lines, "\n")
}

func TestEnvOverridesFile(t *testing.T) {
	file := writeFile(t, fullFile)
	got := mustLoad(t, file,
		"JWT_REFRESH_EXPIRES_IN=48h",
		"JWT_AUDIENCE=web",
		"LOG_LEVEL=error",
		"ALLOW_SIGNUP=false",
		"JWT_ISSUER=", // empty: the file's value stays
	)
	want := fullFileConfig()
	want.RefreshTTL = 48 * time.Hour
	want.Audience = []string{"web"}
	want.LogLevel = slog.LevelError
	want.AllowSignup = false
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		env      string // NAME=value
		wantVar  string // defaults to NAME
		wantText string // substring of the message
	}{
		{env: "HTTP_ADDR=8080", wantText: `"8080" is not a listen address (use host:port or :port`},
		{env: "HTTP_ADDR=:http", wantText: "is not a listen address"},
		{env: "HTTP_ADDR=:70000", wantText: "is not a listen address"},
		{env: "HTTP_ADDR=:-1", wantText: "is not a listen address"},
		{env: "REDIS_URL=http://localhost:6379", wantText: `unsupported scheme "http" (use redis://, rediss://, unix://, redis+sentinel://`},
		{env: "REDIS_URL=localhost:6379", wantText: `"localhost:6379" is a host and port, not a URL (use redis://localhost:6379/0;`},
		{env: "REDIS_URL=127.0.0.1:6379", wantText: `"127.0.0.1:6379" is a host and port, not a URL (use redis://127.0.0.1:6379/0;`},
		{env: "REDIS_URL=user:pw@localhost:6379", wantText: `"user:REDACTED@localhost:6379" has an unsupported scheme "user"`},
		{env: "REDIS_URL=//host:6379", wantText: `unsupported scheme ""`},
		{env: "REDIS_KEY_PREFIX=a b", wantText: "is not a usable key prefix"},
		{env: "REDIS_KEY_PREFIX={tokend}:", wantText: "without spaces, control characters or braces"},
		{env: "CORS_ALLOWED_ORIGINS=*", wantText: `"*" is a wildcard; list each origin exactly`},
		{env: "CORS_ALLOWED_ORIGINS=https://*.example.com", wantText: "is a wildcard"},
		{env: "CORS_ALLOWED_ORIGINS=https://app.example.com/", wantText: "is not an origin"},
		{env: "CORS_ALLOWED_ORIGINS=https://app.example.com/login", wantText: "is not an origin"},
		{env: "CORS_ALLOWED_ORIGINS=app.example.com", wantText: "is not an origin"},
		{env: "CORS_ALLOWED_ORIGINS=https://App.example.com", wantText: "lower case"},
		{env: "CORS_ALLOWED_ORIGINS=null", wantText: "is not an origin"},
		{env: "JWT_ISSUER=auth.example.com", wantText: "is not an issuer URL (use an absolute http or https URL"},
		{env: "JWT_ISSUER=ftp://auth.example.com", wantText: "is not an issuer URL"},
		{env: "JWT_ISSUER=https://auth.example.com?x=1", wantText: "is not an issuer URL"},
		{env: "JWT_ISSUER=https://auth.example.com#frag", wantText: "is not an issuer URL"},
		{env: "JWT_ISSUER=https://auth.example.com#", wantText: "is not an issuer URL"},
		{env: "JWT_ISSUER=https://user@auth.example.com", wantText: "is not an issuer URL"},
		{env: "JWT_ISSUER=https:///path", wantText: "is not an issuer URL"},
		{env: "JWT_ACCESS_EXPIRES_IN=15", wantText: `"15" is not a duration (use Go syntax like 90m or 36h, or days like 7d)`},
		{env: "JWT_ACCESS_EXPIRES_IN=0", wantText: `"0" must be positive (use Go syntax`},
		{env: "JWT_ACCESS_EXPIRES_IN=0s", wantText: "must be positive"},
		{env: "JWT_ACCESS_EXPIRES_IN=-5m", wantText: "must be positive"},
		{env: "JWT_REFRESH_EXPIRES_IN=3x", wantText: `"3x" is not a duration (use Go syntax like 90m or 36h, or days like 7d)`},
		{env: "JWT_REFRESH_EXPIRES_IN=7 days", wantText: "is not a duration"},
		{env: "JWT_REFRESH_EXPIRES_IN=-1d", wantText: "must be positive"},
		{env: "JWT_REFRESH_EXPIRES_IN=10m", wantText: "10m is shorter than JWT_ACCESS_EXPIRES_IN=15m"},
		{env: "JWT_SIGNING_ALG=HS256", wantText: `"HS256" is not a supported algorithm (use ES256, EdDSA or RS256)`},
		{env: "JWT_SIGNING_ALG=none", wantText: "is not a supported algorithm"},
		{env: "JWKS_MAX_AGE=often", wantText: `"often" is not a duration (use a duration of at least 1s, e.g. 5m)`},
		{env: "JWKS_MAX_AGE=500ms", wantText: `"500ms" is too short (use a duration of at least 1s`},
		{env: "JWT_KEYS_RELOAD_INTERVAL=0", wantText: `"0" is too short (use a duration of at least 100ms`},
		{env: "JWT_KEYS_RELOAD_INTERVAL=15", wantText: "is not a duration"},
		{env: "ALLOW_SIGNUP=maybe", wantText: `"maybe" is not a boolean (use true or false)`},
		{env: "TOKEND_ALLOW_DEV_SECRETS=please", wantText: `"please" is not a boolean (use true or false)`},
		{env: "LOG_LEVEL=verbose", wantText: `"verbose" is not a log level (use debug, info, warn or error)`},
		{env: "LOG_LEVEL=info+2", wantText: "is not a log level"},
		{env: "LOG_FORMAT=logfmt", wantText: `"logfmt" is not a log format (use json or text)`},
		{env: "PASSWORD_HASH_MEMORY=19MiB", wantText: `"19MiB" is not a memory size (use a whole number of KiB`},
		{env: "PASSWORD_HASH_MEMORY=0", wantText: "is not a memory size"},
		{env: "PASSWORD_HASH_MEMORY=-1", wantText: "is not a memory size"},
		{env: "PASSWORD_HASH_MEMORY=4294967296", wantText: "is not a memory size"},
		{env: "PASSWORD_HASH_MEMORY=9999999", wantText: "up to 4194304"},
		{env: "PASSWORD_HASH_ITERATIONS=0", wantText: `"0" is not an iteration count (use a whole number from 1 up`},
		{env: "PASSWORD_HASH_ITERATIONS=two", wantText: "is not an iteration count"},
		{env: "PASSWORD_HASH_PARALLELISM=0", wantText: `"0" is not a parallelism (use a whole number from 1 to 255)`},
		{env: "PASSWORD_HASH_PARALLELISM=256", wantText: "is not a parallelism"},
		{env: "REDIS_ALLOW_EVICTION=maybe", wantText: `"maybe" is not a boolean`},
		{env: "JWT_KEYS_GENERATE=sometimes", wantText: `"sometimes" is not a boolean`},
		{env: "RATE_LIMIT_LOGIN_PER_ACCOUNT_IP=5/", wantText: "the period must be a positive duration"},
		{env: "RATE_LIMIT_LOGIN_PER_ACCOUNT=10", wantText: `"10" is not a rate (use N/period, e.g. 10/15m`},
		{env: "RATE_LIMIT_LOGIN_PER_ACCOUNT=-1/1m", wantText: "N must be a whole number"},
		{env: "RATE_LIMIT_LOGIN_PER_ACCOUNT=ten/1m", wantText: "N must be a whole number"},
		{env: "RATE_LIMIT_LOGIN_PER_IP=10/0s", wantText: "the period must be a positive duration"},
		{env: "RATE_LIMIT_LOGIN_PER_IP=10/minute", wantText: "the period must be a positive duration"},
		{env: "TRUSTED_PROXIES=10.0.0.0/33", wantText: `"10.0.0.0/33" is not an IP address or CIDR range`},
		{env: "TRUSTED_PROXIES=proxy.internal", wantText: "is not an IP address or CIDR range"},
		{env: "SHUTDOWN_TIMEOUT=soon", wantText: `"soon" is not a duration (use Go syntax`},
		{env: "SHUTDOWN_TIMEOUT=0s", wantText: "must be positive"},
		{env: "CLIENT_CACHE_TTL=-1s", wantText: `"-1s" is not a duration (use a duration like 10s`},
		{env: "MAX_SESSIONS_PER_USER=0", wantText: `"0" is not a session cap (use a whole number from 1 to 10000`},
		{env: "MAX_SESSIONS_PER_USER=10001", wantText: `is not a session cap`},
		{env: "MAX_SESSIONS_PER_USER=lots", wantText: `is not a session cap`},
		{env: "REFRESH_REUSE_WINDOW=-1s", wantText: `"-1s" is not a reuse window (use a duration from 0 (strict single use) up to 5m`},
		{env: "REFRESH_REUSE_WINDOW=6m", wantText: `"6m" is not a reuse window`},
		{env: "REFRESH_REUSE_WINDOW=soon", wantText: `"soon" is not a reuse window`},
		{env: "DEBUG_ADDR=6060", wantText: `"6060" is not a listen address (use host:port or :port, e.g. 127.0.0.1:6060)`},
		{env: "DEBUG_ADDR=:8080", wantText: `":8080" is also HTTP_ADDR`},
		{env: "METRICS_ADDR=9090", wantText: `"9090" is not a listen address (use host:port or :port, e.g. :9090)`},
		{env: "METRICS_ADDR=:8080", wantText: `":8080" is also HTTP_ADDR or DEBUG_ADDR`},
		{env: "REDIS_STARTUP_TIMEOUT=soon", wantText: `"soon" is not a duration (use a duration like 30s or 2m, or 0 for a single attempt)`},
		{env: "REDIS_STARTUP_TIMEOUT=-1s", wantText: `"-1s" is too short`},
		{env: "EVENTS_MAX_STREAMS_PER_CLIENT=0", wantText: `"0" is not a stream cap (use a whole number from 1 to 10000, e.g. 64)`},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		name, _, _ := strings.Cut(tt.env, "=")
		if tt.wantVar == "" {
			tt.wantVar = name
		}
		covered[name] = true
		t.Run(tt.env, func(t *testing.T) {
			_, err := config.Load("", []string{tt.env})
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.wantVar+": ") {
				t.Errorf("error %q does not start with %q", msg, tt.wantVar+": ")
			}
			if !strings.Contains(msg, tt.wantText) {
				t.Errorf("error %q does not contain %q", msg, tt.wantText)
			}
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Variable != tt.wantVar || ce.File != "" {
				t.Errorf("errors.As(*config.Error) = %+v, want Variable %s", ce, tt.wantVar)
			}
		})
	}
	for _, v := range config.Variables() {
		if v.Name == "JWT_AUDIENCE" || v.Name == "JWT_KEYS_DIR" || v.Name == "TOKEND_BOOTSTRAP" {
			continue // free-form
		}
		if !covered[v.Name] {
			t.Errorf("no invalid-value test for %s", v.Name)
		}
	}
}

func TestExactMessage(t *testing.T) {
	_, err := config.Load("", []string{"JWT_REFRESH_EXPIRES_IN=3x"})
	want := `JWT_REFRESH_EXPIRES_IN: "3x" is not a duration (use Go syntax like 90m or 36h, or days like 7d)`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
}

func TestAllProblemsReported(t *testing.T) {
	_, err := config.Load("", []string{"LOG_LEVEL=loud", "LOG_FORMAT=xml", "JWT_SIGNING_ALG=HS256", "JWT_ACCESS_EXPIRES_IN=1y"})
	if err == nil {
		t.Fatal("want an error")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{"JWT_ACCESS_EXPIRES_IN: ", "JWT_SIGNING_ALG: ", "LOG_LEVEL: ", "LOG_FORMAT: "} // documented order
	if len(lines) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(lines), len(want), err)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], w)
		}
	}
}

func TestCrossChecks(t *testing.T) {
	tests := []struct {
		env      []string
		wantVar  string
		wantText string
	}{
		{[]string{"JWT_ACCESS_EXPIRES_IN=2h", "JWT_REFRESH_EXPIRES_IN=1h"}, "JWT_REFRESH_EXPIRES_IN", "1h is shorter than JWT_ACCESS_EXPIRES_IN=2h"},
		{[]string{"JWT_ACCESS_EXPIRES_IN=2d"}, "JWT_REFRESH_EXPIRES_IN", "24h is shorter than JWT_ACCESS_EXPIRES_IN=2d"},
		{[]string{"PASSWORD_HASH_MEMORY=16", "PASSWORD_HASH_PARALLELISM=4"}, "PASSWORD_HASH_MEMORY", "16 KiB is less than 8 x PASSWORD_HASH_PARALLELISM=4"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.env, " "), func(t *testing.T) {
			_, err := config.Load("", tt.env)
			var ce *config.Error
			if !errors.As(err, &ce) || ce.Variable != tt.wantVar || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error = %v, want %s: ...%s...", err, tt.wantVar, tt.wantText)
			}
		})
	}
	// No cross-check noise when one side is itself invalid.
	_, err := config.Load("", []string{"JWT_ACCESS_EXPIRES_IN=bad"})
	if err == nil || strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("want exactly one problem, got %v", err)
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown key", "jwt_ttl: 15m\n", []string{`unknown key "jwt_ttl"`, "tokend.yaml"}},
		{"unknown key among known", "log_level: debug\nredis_addr: x\n", []string{`unknown key "redis_addr"`}},
		{"case duplicate", "log_level: debug\nLOG_LEVEL: info\n", []string{"given twice"}},
		{"nested mapping", "jwt_issuer:\n  url: https://x\n", []string{"JWT_ISSUER: is a mapping"}},
		{"list for a scalar", "log_level: [debug]\n", []string{"LOG_LEVEL: is a list (use a single value)", "set in config file"}},
		{"not a mapping", "- a\n- b\n", []string{"not a YAML mapping"}},
		{"broken YAML", "log_level: [\n", []string{"not a YAML mapping"}},
		{"invalid value names variable and file", "jwt_refresh_expires_in: 3x\n",
			[]string{`JWT_REFRESH_EXPIRES_IN: "3x" is not a duration (use Go syntax like 90m or 36h, or days like 7d) (set in config file `}},
		{"number where duration expected", "jwt_access_expires_in: 900\n", []string{`JWT_ACCESS_EXPIRES_IN: "900" is not a duration`}},
		{"boolean where alg expected", "jwt_signing_alg: true\n", []string{`JWT_SIGNING_ALG: "true" is not a supported algorithm`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Load(writeFile(t, tt.yaml), nil)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "While parsing config") {
				t.Errorf("error %q carries viper's wrapping", err)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := config.Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error = %v, want os.ErrNotExist", err)
		}
	})
	t.Run("env does not rescue an unknown file key", func(t *testing.T) {
		_, err := config.Load(writeFile(t, "typo: 1\n"), []string{"LOG_LEVEL=debug"})
		if err == nil {
			t.Error("want an error")
		}
	})
	t.Run("env fixes an invalid file value", func(t *testing.T) {
		c := mustLoad(t, writeFile(t, "log_level: loud\n"), "LOG_LEVEL=warn")
		if c.LogLevel != slog.LevelWarn {
			t.Errorf("LogLevel = %v", c.LogLevel)
		}
	})
}

func TestParseDuration(t *testing.T) {
	const day = 24 * time.Hour
	valid := []struct {
		in   string
		want time.Duration
	}{
		{"0", 0},
		{"0s", 0},
		{"-0", 0},
		{"15m", 15 * time.Minute},
		{"90m", 90 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"36h", 36 * time.Hour},
		{"2.5s", 2500 * time.Millisecond},
		{"300ms", 300 * time.Millisecond},
		{"1us", time.Microsecond},
		{"1µs", time.Microsecond},
		{"10ns", 10},
		{"-1h", -time.Hour},
		{"+2m", 2 * time.Minute},
		{"1d", day},
		{"7d", 7 * day},
		{"1d12h", 36 * time.Hour},
		{"1.5d", 36 * time.Hour},
		{".5d", 12 * time.Hour},
		{"0.1d", 144 * time.Minute},
		{"2d3h4m5s", 2*day + 3*time.Hour + 4*time.Minute + 5*time.Second},
		{"1h1d", 25 * time.Hour},
		{"-1d", -day},
		{"106751d", 106751 * day},
	}
	for _, tt := range valid {
		got, err := config.ParseDuration(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		// Agrees with the standard library whenever there is no day unit.
		if !strings.Contains(tt.in, "d") {
			if std, err := time.ParseDuration(tt.in); err != nil || std != got {
				t.Errorf("ParseDuration(%q) = %v, time.ParseDuration = %v, %v", tt.in, got, std, err)
			}
		}
	}
	invalid := []string{"", "-", "+", "d", "1", "15", "3x", "1dd", "1 d", " 1d", "1d ", "7days", "1D", "1w",
		"..5d", "1.2.3d", "d1", "1d-1h", "106752d", "9223372036854775807ns1ns", "1e3s"}
	for _, in := range invalid {
		if got, err := config.ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseDuration(%q) error %q does not quote the input", in, err)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{15 * time.Minute, "15m"},
		{90 * time.Minute, "1h30m"},
		{24 * time.Hour, "24h"},
		{36 * time.Hour, "36h"},
		{48 * time.Hour, "2d"},
		{7 * 24 * time.Hour, "7d"},
		{15 * time.Second, "15s"},
		{time.Hour + time.Second, "1h1s"},
		{1500 * time.Millisecond, "1.5s"},
		{-time.Hour, "-1h"},
	}
	for _, tt := range tests {
		got := config.FormatDuration(tt.in)
		if got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := config.ParseDuration(got); err != nil || back != tt.in {
			t.Errorf("ParseDuration(FormatDuration(%v)) = %v, %v", tt.in, back, err)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"7d", "1d12h", "1.5d", "90m", "-1h", "0", "3x", ".5d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := config.ParseDuration(s)
		if err != nil {
			return
		}
		if std, stdErr := time.ParseDuration(s); stdErr == nil && std != d {
			t.Fatalf("ParseDuration(%q) = %v, time.ParseDuration = %v", s, d, std)
		}
		if back, err := config.ParseDuration(config.FormatDuration(d)); err != nil || back != d {
			t.Fatalf("round trip of %v via %q: %v, %v", d, config.FormatDuration(d), back, err)
		}
	})
}

const secretURL = "redis://default:s3cr3t-pa55@redis.internal:6379/0?dial_timeout=3s&sentinel_password=s3cr3t-pa55"

func TestRedaction(t *testing.T) {
	c := mustLoad(t, "", "REDIS_URL="+secretURL)
	if c.RedisURL != secretURL {
		t.Fatalf("RedisURL = %q: the store needs the real URL", c.RedisURL)
	}
	var redisSetting config.Setting
	for _, s := range c.Settings() {
		if s.Name == "REDIS_URL" {
			redisSetting = s
		} else if s.Secret {
			t.Errorf("%s marked secret", s.Name)
		}
	}
	want := "redis://default:REDACTED@redis.internal:6379/0?dial_timeout=3s&sentinel_password=REDACTED"
	if redisSetting.Value != want || !redisSetting.Secret {
		t.Errorf("REDIS_URL setting = %+v, want Value %q, Secret", redisSetting, want)
	}

	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("config", "config", c)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("config", "config", c)
	outputs := map[string]string{
		"String":    c.String(),
		"%v":        fmt.Sprintf("%v", c),
		"%+v":       fmt.Sprintf("%+v", c),
		"%#v":       fmt.Sprintf("%#v", c),
		"%s":        fmt.Sprintf("%s", c),
		"pointer":   fmt.Sprintf("%v", &c),
		"slog":      logBuf.String(),
		"Settings":  fmt.Sprint(c.Settings()),
		"RedactURL": config.RedactURL(secretURL),
	}
	for name, out := range outputs {
		if strings.Contains(out, "s3cr3t") {
			t.Errorf("%s leaks the password: %s", name, out)
		}
		if !strings.Contains(out, "REDACTED") {
			t.Errorf("%s does not show REDACTED: %s", name, out)
		}
	}
	if !strings.Contains(logBuf.String(), `"REDIS_URL":"redis://default:REDACTED@`) {
		t.Errorf("slog JSON output lacks the redacted URL: %s", logBuf.String())
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"redis://localhost:6379/0", "redis://localhost:6379/0"},
		{"redis://:pw@h:6379", "redis://:REDACTED@h:6379"},
		{"rediss://user:pw@h:6379/2", "rediss://user:REDACTED@h:6379/2"},
		{"redis://user@h", "redis://user@h"},
		{"redis+sentinel://:pw@s1:26379,s2:26379/m?password=pw", "redis+sentinel://:REDACTED@s1:26379,s2:26379/m?password=REDACTED"},
		{"host:pw@x", "host:REDACTED@x"},
		{"user:pw@h:6379", "user:REDACTED@h:6379"},
		{"localhost:6379", "localhost:6379"}, // nothing secret: shown as typed
		{"127.0.0.1:6379", "REDACTED"},       // not a URL at all (url.Parse fails)
		{"redis://:p%40ss@h", "redis://:REDACTED@h"},
	}
	for _, tt := range tests {
		if got := config.RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestErrorsNeverLeakRedisPassword(t *testing.T) {
	for _, u := range []string{
		"http://:s3cr3t@host:6379",
		"s3cr3t@host:6379",
		"user:s3cr3t@host:6379",
		"redis://:s3cr3t@host:6379/\x7f",
		"redis ://:s3cr3t@host",
		"127.0.0.1:6379?password=s3cr3t",
	} {
		_, err := config.Load("", []string{"REDIS_URL=" + u})
		if err == nil {
			t.Errorf("REDIS_URL=%q accepted", u)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") || !strings.HasPrefix(err.Error(), "REDIS_URL: ") {
			t.Errorf("REDIS_URL=%q: error %q", u, err)
		}
	}
	// From the file too.
	_, err := config.Load(writeFile(t, "redis_url: 'http://:s3cr3t@h'\n"), nil)
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("file REDIS_URL error = %v", err)
	}
}

func TestSettingsReflectEffectiveValues(t *testing.T) {
	c := mustLoad(t, writeFile(t, fullFile), "JWT_REFRESH_EXPIRES_IN=36h")
	got := map[string]string{}
	for _, s := range c.Settings() {
		got[s.Name] = s.Value
	}
	want := map[string]string{
		"HTTP_ADDR":                       "127.0.0.1:9000",
		"REDIS_URL":                       "redis://redis:6379/1",
		"REDIS_KEY_PREFIX":                "svc:",
		"JWT_ISSUER":                      "https://auth.example.com",
		"JWT_AUDIENCE":                    "api,billing",
		"JWT_ACCESS_EXPIRES_IN":           "10m",
		"JWT_REFRESH_EXPIRES_IN":          "36h",
		"JWT_SIGNING_ALG":                 "EdDSA",
		"JWT_KEYS_DIR":                    "/etc/tokend/keys",
		"JWKS_MAX_AGE":                    "10m",
		"JWT_KEYS_RELOAD_INTERVAL":        "30s",
		"ALLOW_SIGNUP":                    "true",
		"LOG_LEVEL":                       "debug",
		"LOG_FORMAT":                      "text",
		"PASSWORD_HASH_MEMORY":            "65536",
		"PASSWORD_HASH_ITERATIONS":        "3",
		"PASSWORD_HASH_PARALLELISM":       "2",
		"RATE_LIMIT_LOGIN_PER_ACCOUNT":    "5/10m",
		"JWT_KEYS_GENERATE":               "false",
		"TOKEND_BOOTSTRAP":                "",
		"TOKEND_ALLOW_DEV_SECRETS":        "false",
		"REDIS_ALLOW_EVICTION":            "false",
		"RATE_LIMIT_LOGIN_PER_ACCOUNT_IP": "10/15m",
		"RATE_LIMIT_LOGIN_PER_IP":         "300/1m",
		"TRUSTED_PROXIES":                 "10.0.0.0/8,fd00::/8",
		"SHUTDOWN_TIMEOUT":                "30s",
		"CLIENT_CACHE_TTL":                "10s",
		"CORS_ALLOWED_ORIGINS":            "",
		"DEBUG_ADDR":                      "",
		"METRICS_ADDR":                    "",
		"REDIS_STARTUP_TIMEOUT":           "30s",
		"EVENTS_MAX_STREAMS_PER_CLIENT":   "64",
		"REFRESH_REUSE_WINDOW":            "30s",
		"MAX_SESSIONS_PER_USER":           "100",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("settings\n got %v\nwant %v", got, want)
	}
	// Settings are loadable: feeding them back as environment gives the same Config.
	var env []string
	for _, s := range c.Settings() {
		env = append(env, s.Name+"="+s.Value)
	}
	if back := mustLoad(t, "", env...); !reflect.DeepEqual(back, c) {
		t.Errorf("reloading Settings as env\n got %#v\nwant %#v", back, c)
	}
}

// The issuer follows HTTP_ADDR when JWT_ISSUER is unset (discovery clients
// fetch jwks_uri from it), and the audience is never empty (RFC 9068 §2.2).
func TestDerivedIssuerAndAudience(t *testing.T) {
	tests := []struct {
		env      []string
		iss, aud string
	}{
		{nil, "http://localhost:8080", "http://localhost:8080"},
		{[]string{"HTTP_ADDR=127.0.0.1:9000"}, "http://127.0.0.1:9000", "http://127.0.0.1:9000"},
		{[]string{"HTTP_ADDR=0.0.0.0:9001"}, "http://localhost:9001", "http://localhost:9001"},
		{[]string{"HTTP_ADDR=[::]:9002"}, "http://localhost:9002", "http://localhost:9002"},
		{[]string{"HTTP_ADDR=[::1]:9003"}, "http://[::1]:9003", "http://[::1]:9003"},
		{[]string{"HTTP_ADDR=auth.internal:9004"}, "http://auth.internal:9004", "http://auth.internal:9004"},
		{[]string{"HTTP_ADDR=127.0.0.1:9000", "JWT_ISSUER=https://auth.example.com"}, "https://auth.example.com", "https://auth.example.com"},
		{[]string{"HTTP_ADDR=127.0.0.1:9000", "JWT_AUDIENCE=orders"}, "http://127.0.0.1:9000", "orders"},
	}
	for _, tt := range tests {
		c := mustLoad(t, "", tt.env...)
		if c.Issuer != tt.iss || len(c.Audience) != 1 || c.Audience[0] != tt.aud {
			t.Errorf("%v: issuer %q audience %q, want %q and [%q]", tt.env, c.Issuer, c.Audience, tt.iss, tt.aud)
		}
	}
	for addr, want := range map[string]string{":8080": "127.0.0.1:8080", "0.0.0.0:1": "127.0.0.1:1", "[::]:2": "127.0.0.1:2", "127.0.0.2:3": "127.0.0.2:3", "[::1]:4": "[::1]:4"} {
		if got, err := config.LocalAddr(addr); err != nil || got != want {
			t.Errorf("LocalAddr(%q) = %q, %v; want %q", addr, got, err, want)
		}
	}
}
