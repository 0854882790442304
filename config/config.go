// Package config loads tokend's configuration (docs/configuration.md).
//
// Sources, highest precedence first:
//
//  1. environment variables (HTTP_ADDR, REDIS_URL, ... — see Variables);
//  2. an optional YAML file whose top-level keys are the same variable names,
//     matched case-insensitively, so `jwt_refresh_expires_in: 7d` and
//     `JWT_REFRESH_EXPIRES_IN: 7d` are the same key (lower case is the
//     documented style). JWT_AUDIENCE may also be a YAML list. Any other key
//     is an error, so a typo cannot be silently ignored;
//  3. the built-in defaults of the Variables table.
//
// An environment variable that is set but empty, and a file key whose value
// is empty or null, count as unset: the next source applies. This lets
// docker compose pass `${VAR:-}` through without overriding anything.
//
// Every invalid value is reported (all of them, joined) with the variable's
// name and the accepted form, e.g.
//
//	JWT_REFRESH_EXPIRES_IN: "3x" is not a duration (use Go syntax like 90m or 36h, or days like 7d)
//
// Values that may carry secrets (the password in REDIS_URL) never appear in
// errors, in Settings, in String or in LogValue.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/viper"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/verify"
)

// Config is the effective, validated configuration.
type Config struct {
	HTTPAddr           string        // HTTP_ADDR [:8080]
	RedisURL           string        // REDIS_URL [unset = embedded store]; contains secrets, never log it
	RedisKeyPrefix     string        // REDIS_KEY_PREFIX [tokend:]
	RedisAllowEviction bool          // REDIS_ALLOW_EVICTION [false]; start even if Redis may evict keys
	RedisStartupWait   time.Duration // REDIS_STARTUP_TIMEOUT [30s]; how long serve waits for Redis at start-up; 0 = one attempt
	Issuer             string        // JWT_ISSUER [unset = derived from HTTP_ADDR, see DefaultIssuer]
	Audience           []string      // JWT_AUDIENCE [unset = the issuer URL]; comma- or space-separated
	AccessTTL          time.Duration // JWT_ACCESS_EXPIRES_IN [15m]
	RefreshTTL         time.Duration // JWT_REFRESH_EXPIRES_IN [24h]
	ReuseWindow        time.Duration // REFRESH_REUSE_WINDOW [30s]; 0 = strict single use, at most MaxReuseWindow
	SigningAlg         string        // JWT_SIGNING_ALG [ES256]; ES256|EdDSA|RS256
	KeysDir            string        // JWT_KEYS_DIR [unset = ephemeral dev key]
	KeysGenerate       bool          // JWT_KEYS_GENERATE [false]; generate keys into an empty JWT_KEYS_DIR at start-up
	JWKSMaxAge         time.Duration // JWKS_MAX_AGE [5m]; Cache-Control max-age of the JWKS, ≥ 1s
	KeysReloadInterval time.Duration // JWT_KEYS_RELOAD_INTERVAL [15s]; how often JWT_KEYS_DIR is re-read, ≥ 100ms
	AllowSignup        bool          // ALLOW_SIGNUP [false]
	Bootstrap          string        // TOKEND_BOOTSTRAP [unset]; YAML file of users and clients created at start-up
	AllowDevSecrets    bool          // TOKEND_ALLOW_DEV_SECRETS [false]; let bootstrap users keep the committed development password
	LogLevel           slog.Level    // LOG_LEVEL [info]; debug|info|warn|error
	LogFormat          string        // LOG_FORMAT [json]; json|text

	PasswordHashMemory      uint32 // PASSWORD_HASH_MEMORY [19456] KiB (argon2id, OWASP)
	PasswordHashIterations  uint32 // PASSWORD_HASH_ITERATIONS [2]
	PasswordHashParallelism uint8  // PASSWORD_HASH_PARALLELISM [1]

	LoginRateAccountIP Rate           // RATE_LIMIT_LOGIN_PER_ACCOUNT_IP [10/15m]; zero = off
	LoginRateAccount   Rate           // RATE_LIMIT_LOGIN_PER_ACCOUNT [100/24h]; zero = off
	LoginRateIP        Rate           // RATE_LIMIT_LOGIN_PER_IP [100/1m]; zero = off
	TrustedProxies     []netip.Prefix // TRUSTED_PROXIES [unset]

	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT [15s]
	ClientCacheTTL  time.Duration // CLIENT_CACHE_TTL [10s]; 0 disables the client cache

	MaxSessionsPerUser int // MAX_SESSIONS_PER_USER [100]; 1..MaxSessionsLimit

	EventsMaxStreams int // EVENTS_MAX_STREAMS_PER_CLIENT [64]; GET /events streams per client per replica

	CORSAllowedOrigins []string // CORS_ALLOWED_ORIGINS [unset = no CORS]; exact origins

	// IssuerDerived and AudienceDefaulted say that JWT_ISSUER and
	// JWT_AUDIENCE were unset and Issuer and Audience are the defaults, so
	// that serve can say so in its log.
	IssuerDerived, AudienceDefaulted bool

	DebugAddr   string // DEBUG_ADDR [unset = off]; pprof listener, never on HTTP_ADDR
	MetricsAddr string // METRICS_ADDR [unset = /metrics on HTTP_ADDR]; a listener of its own for /metrics
}

// Variable documents one configuration variable. Variables() is the single
// source of truth for docs/configuration.md and the deployment files.
type Variable struct {
	Name        string // environment variable, and (case-insensitively) YAML key
	Default     string // "" = unset
	Form        string // accepted values
	Description string
}

// Setting is one variable's effective value, as printed by `tokend config`.
type Setting struct {
	Name   string
	Value  string // "" = unset
	Secret bool   // the variable can carry a secret; Value has it replaced by "REDACTED"
}

// Redacted replaces secrets in Settings, String and LogValue.
const Redacted = "REDACTED"

// Log formats.
const (
	LogFormatJSON = "json"
	LogFormatText = "text"
)

// MaxReuseWindow bounds REFRESH_REUSE_WINDOW. The window is for retries and
// concurrent tabs, which take seconds; a longer one only widens the time in
// which a stolen token that was just rotated shares the session
// (docs/design.md, "The reuse window").
const MaxReuseWindow = 5 * time.Minute

// Bounds for the argon2id parameters.
const (
	maxHashMemoryKiB = 4 * 1024 * 1024 // 4 GiB per hash is surely a typo
)

// Accepted forms, shared by the table and the error messages.
const (
	formDuration = "Go syntax like 90m or 36h, or days like 7d"
	// formDurationOrZero also accepts 0 (off).
	formDurationOrZero = "a duration like 10s or 1m, or 0 to disable"
	formMaxAge         = "a duration of at least 1s, e.g. 5m"
	formReuseWindow    = "a duration from 0 (strict single use) up to 5m, e.g. 30s"
	formMaxSessions    = "a whole number from 1 to 10000, e.g. 100"
	formReload         = "a duration of at least 100ms, e.g. 15s"
	formAddr           = "host:port or :port, e.g. :8080 or 127.0.0.1:8080"
	formDebugAddr      = "host:port or :port, e.g. 127.0.0.1:6060"
	formMetricsAddr    = "host:port or :port, e.g. :9090"
	formStartupWait    = "a duration like 30s or 2m, or 0 for a single attempt"
	formMaxStreams     = "a whole number from 1 to 10000, e.g. 64"
	formRedisURL       = "redis://, rediss://, unix://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://, e.g. redis://:password@host:6379/0"
	formPrefix         = "a key prefix without spaces, control characters or braces, e.g. tokend:"
	formIssuer         = "an absolute http or https URL without query or fragment, e.g. https://auth.example.com"
	formAudience       = "comma- or space-separated list, e.g. api,billing"
	formAlg            = "ES256, EdDSA or RS256"
	formBool           = "true or false"
	formLevel          = "debug, info, warn or error"
	formFormat         = "json or text"
	formMemory         = "a whole number of KiB from 8 x PASSWORD_HASH_PARALLELISM up to 4194304, e.g. 19456 for 19 MiB"
	formIter           = "a whole number from 1 up, e.g. 2"
	formPar            = "a whole number from 1 to 255"
	formOrigins        = "comma- or space-separated origins (scheme://host[:port], no path, no wildcard), e.g. https://app.example.com"
)

// variable is a Variable plus how to parse it into, and print it from, a Config.
type variable struct {
	Variable
	secret bool
	parse  func(c *Config, raw string) string // returns "" or the problem, without the name
	format func(c Config) string
}

var table = []variable{
	{
		Variable: Variable{"HTTP_ADDR", ":8080", formAddr,
			"Address the HTTP server listens on."},
		parse:  parseListenAddr(func(c *Config) *string { return &c.HTTPAddr }, formAddr),
		format: func(c Config) string { return c.HTTPAddr },
	},
	{
		Variable: Variable{"REDIS_URL", "", formRedisURL,
			"Redis server (single node, TLS, Sentinel or Cluster). Unset: embedded in-process store, data lost on restart (development only)."},
		secret: true,
		parse: func(c *Config, raw string) string {
			if host, port, err := net.SplitHostPort(raw); err == nil && isPort(port) && !strings.ContainsAny(host, "/?#@ ") {
				// "localhost:6379", "127.0.0.1:6379": a host and port, and
				// nothing secret in them.
				return fmt.Sprintf("%q is a host and port, not a URL (use redis://%s/0; the forms: %s)", raw, raw, formRedisURL)
			}
			u, err := url.Parse(raw)
			if err != nil {
				// url.Parse errors quote the input, which may hold a password.
				return fmt.Sprintf("not a valid URL (use %s)", formRedisURL)
			}
			switch strings.ToLower(u.Scheme) {
			case "redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel", "redis+cluster", "rediss+cluster":
			default:
				return fmt.Sprintf("%q has an unsupported scheme %q (use %s)", RedactURL(raw), u.Scheme, formRedisURL)
			}
			c.RedisURL = raw
			return ""
		},
		format: func(c Config) string { return RedactURL(c.RedisURL) },
	},
	{
		Variable: Variable{"REDIS_KEY_PREFIX", "tokend:", formPrefix,
			"Prefix of every Redis key, so several services can share one Redis."},
		parse: func(c *Config, raw string) string {
			if strings.ContainsFunc(raw, func(r rune) bool {
				return unicode.IsSpace(r) || unicode.IsControl(r) || r == '{' || r == '}'
			}) {
				// Braces would break the hash tags that keep a session in one Cluster slot.
				return fmt.Sprintf("%q is not a usable key prefix (use %s)", raw, formPrefix)
			}
			c.RedisKeyPrefix = raw
			return ""
		},
		format: func(c Config) string { return c.RedisKeyPrefix },
	},
	{
		Variable: Variable{"REDIS_ALLOW_EVICTION", "false", formBool,
			"Start even when Redis's maxmemory-policy is not noeviction. By default tokend refuses to start then, because an evicting Redis deletes users, clients and session indexes when memory runs short. true logs an error at every start instead; for a Redis you cannot reconfigure, and only with maxmemory far above what tokend uses."},
		parse:  parseBoolField(func(c *Config) *bool { return &c.RedisAllowEviction }),
		format: func(c Config) string { return strconv.FormatBool(c.RedisAllowEviction) },
	},
	{
		Variable: Variable{"REDIS_STARTUP_TIMEOUT", "30s", formStartupWait,
			"How long `tokend serve` waits at start-up for Redis to answer, trying again with backoff (compose and orchestrators start services in parallel), before it gives up saying what is wrong. 0: one attempt. A password Redis refuses ends the wait at once. The admin CLI tries once."},
		parse:  parseMin(func(c *Config) *time.Duration { return &c.RedisStartupWait }, 0, formStartupWait),
		format: func(c Config) string { return FormatDuration(c.RedisStartupWait) },
	},
	{
		Variable: Variable{"JWT_ISSUER", "", formIssuer,
			"Issuer (iss claim and RFC 8414 metadata): the public base URL of tokend. Unset: http://HOST:PORT of HTTP_ADDR, with localhost for an empty or wildcard host."},
		parse: func(c *Config, raw string) string {
			u, err := url.Parse(raw)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
				u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
				return fmt.Sprintf("%q is not an issuer URL (use %s)", raw, formIssuer)
			}
			c.Issuer = raw
			return ""
		},
		format: func(c Config) string { return c.Issuer },
	},
	{
		Variable: Variable{"JWT_AUDIENCE", "", formAudience,
			"Audiences (aud claim): the resource servers that accept the access tokens. Unset: the issuer URL (RFC 9068 §3 default resource)."},
		parse: func(c *Config, raw string) string {
			var aud []string
			for _, a := range strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
				if !slices.Contains(aud, a) {
					aud = append(aud, a)
				}
			}
			c.Audience = aud
			return ""
		},
		format: func(c Config) string { return strings.Join(c.Audience, ",") },
	},
	{
		Variable: Variable{"JWT_ACCESS_EXPIRES_IN", "15m", formDuration,
			"Lifetime of an access token."},
		parse:  parseTTL(func(c *Config) *time.Duration { return &c.AccessTTL }),
		format: func(c Config) string { return FormatDuration(c.AccessTTL) },
	},
	{
		Variable: Variable{"JWT_REFRESH_EXPIRES_IN", "24h", formDuration,
			"Lifetime of a session and its refresh tokens, counted from sign-in (absolute). At least JWT_ACCESS_EXPIRES_IN."},
		parse:  parseTTL(func(c *Config) *time.Duration { return &c.RefreshTTL }),
		format: func(c Config) string { return FormatDuration(c.RefreshTTL) },
	},
	{
		Variable: Variable{"REFRESH_REUSE_WINDOW", "30s", formReuseWindow,
			"For how long after a refresh the token it replaced is still answered with the same new refresh token (a retry after a lost reply or a 503, a second browser tab). Outside it, or once the new token has been used, presenting an earlier token revokes the session as theft. 0 is strict single use."},
		parse: func(c *Config, raw string) string {
			d, err := ParseDuration(raw)
			if err != nil || d < 0 || d > MaxReuseWindow {
				return fmt.Sprintf("%q is not a reuse window (use %s)", raw, formReuseWindow)
			}
			c.ReuseWindow = d
			return ""
		},
		format: func(c Config) string { return FormatDuration(c.ReuseWindow) },
	},
	{
		Variable: Variable{"JWT_SIGNING_ALG", verify.ES256, formAlg,
			"Algorithm of new signing keys and access tokens."},
		parse: func(c *Config, raw string) string {
			alg, err := SigningAlg(raw)
			if err != nil {
				return err.Error()
			}
			c.SigningAlg = alg
			return ""
		},
		format: func(c Config) string { return c.SigningAlg },
	},
	{
		Variable: Variable{"JWT_KEYS_DIR", "", "a directory path",
			"Directory of the signing keys (managed with `tokend keys`). Unset: an ephemeral key made at start-up (development only)."},
		parse: func(c *Config, raw string) string {
			c.KeysDir = raw
			return ""
		},
		format: func(c Config) string { return c.KeysDir },
	},
	{
		Variable: Variable{"JWT_KEYS_GENERATE", "false", formBool,
			"At start-up, generate into JWT_KEYS_DIR (made if missing) a key of each kind it has none of, as `tokend keys generate` does (JWT_SIGNING_ALG), so a first `docker compose up` gets persistent keys with no exec step. Only key files count; a directory with both kinds is left alone."},
		parse:  parseBoolField(func(c *Config) *bool { return &c.KeysGenerate }),
		format: func(c Config) string { return strconv.FormatBool(c.KeysGenerate) },
	},
	{
		Variable: Variable{"JWKS_MAX_AGE", "5m", formMaxAge,
			"Cache-Control max-age of /.well-known/jwks.json. A rotated key is published JWKS_MAX_AGE + JWT_KEYS_RELOAD_INTERVAL before it signs."},
		parse:  parseMin(func(c *Config) *time.Duration { return &c.JWKSMaxAge }, time.Second, formMaxAge),
		format: func(c Config) string { return FormatDuration(c.JWKSMaxAge) },
	},
	{
		Variable: Variable{"JWT_KEYS_RELOAD_INTERVAL", "15s", formReload,
			"How often every replica re-reads JWT_KEYS_DIR to pick up rotated keys."},
		parse:  parseMin(func(c *Config) *time.Duration { return &c.KeysReloadInterval }, 100*time.Millisecond, formReload),
		format: func(c Config) string { return FormatDuration(c.KeysReloadInterval) },
	},
	{
		Variable: Variable{"ALLOW_SIGNUP", "false", formBool,
			"Enable self-registration (POST /users)."},
		parse:  parseBoolField(func(c *Config) *bool { return &c.AllowSignup }),
		format: func(c Config) string { return strconv.FormatBool(c.AllowSignup) },
	},
	{
		Variable: Variable{"TOKEND_BOOTSTRAP", "", "a file path",
			"YAML file of users and clients that `tokend serve` creates at start-up if they do not exist (existing ones are left unchanged), with passwords and client secrets read from files or environment variables, never logged. See docs/operations.md."},
		parse: func(c *Config, raw string) string {
			c.Bootstrap = raw
			return ""
		},
		format: func(c Config) string { return c.Bootstrap },
	},
	{
		Variable: Variable{"TOKEND_ALLOW_DEV_SECRETS", "false", formBool,
			"Start even though a TOKEND_BOOTSTRAP user's password is a development password committed to the tokend repository (deploy/dev-admin-password), which anyone can read. Off, `tokend serve` refuses to start with such a password — in the file, or already set on the user — and says how to replace it. For a local trial only."},
		parse:  parseBoolField(func(c *Config) *bool { return &c.AllowDevSecrets }),
		format: func(c Config) string { return strconv.FormatBool(c.AllowDevSecrets) },
	},
	{
		Variable: Variable{"LOG_LEVEL", "info", formLevel,
			"Minimum level of log records."},
		parse: func(c *Config, raw string) string {
			switch strings.ToLower(raw) {
			case "debug":
				c.LogLevel = slog.LevelDebug
			case "info":
				c.LogLevel = slog.LevelInfo
			case "warn", "warning":
				c.LogLevel = slog.LevelWarn
			case "error":
				c.LogLevel = slog.LevelError
			default:
				return fmt.Sprintf("%q is not a log level (use %s)", raw, formLevel)
			}
			return ""
		},
		format: func(c Config) string { return strings.ToLower(c.LogLevel.String()) },
	},
	{
		Variable: Variable{"LOG_FORMAT", LogFormatJSON, formFormat,
			"Log output: JSON lines or human-readable text."},
		parse: func(c *Config, raw string) string {
			switch f := strings.ToLower(raw); f {
			case LogFormatJSON, LogFormatText:
				c.LogFormat = f
				return ""
			}
			return fmt.Sprintf("%q is not a log format (use %s)", raw, formFormat)
		},
		format: func(c Config) string { return c.LogFormat },
	},
	{
		Variable: Variable{"PASSWORD_HASH_MEMORY", "19456", formMemory,
			"argon2id memory per password hash, in KiB (OWASP: 19456 = 19 MiB)."},
		parse: func(c *Config, raw string) string {
			n, err := strconv.ParseUint(raw, 10, 32)
			if err != nil || n < 8 || n > maxHashMemoryKiB {
				return fmt.Sprintf("%q is not a memory size (use %s)", raw, formMemory)
			}
			c.PasswordHashMemory = uint32(n)
			return ""
		},
		format: func(c Config) string { return strconv.FormatUint(uint64(c.PasswordHashMemory), 10) },
	},
	{
		Variable: Variable{"PASSWORD_HASH_ITERATIONS", "2", formIter,
			"argon2id passes over the memory (OWASP: 2)."},
		parse: func(c *Config, raw string) string {
			n, err := strconv.ParseUint(raw, 10, 32)
			if err != nil || n < 1 {
				return fmt.Sprintf("%q is not an iteration count (use %s)", raw, formIter)
			}
			c.PasswordHashIterations = uint32(n)
			return ""
		},
		format: func(c Config) string { return strconv.FormatUint(uint64(c.PasswordHashIterations), 10) },
	},
	{
		Variable: Variable{"PASSWORD_HASH_PARALLELISM", "1", formPar,
			"argon2id lanes (OWASP: 1)."},
		parse: func(c *Config, raw string) string {
			n, err := strconv.ParseUint(raw, 10, 8)
			if err != nil || n < 1 {
				return fmt.Sprintf("%q is not a parallelism (use %s)", raw, formPar)
			}
			c.PasswordHashParallelism = uint8(n)
			return ""
		},
		format: func(c Config) string { return strconv.FormatUint(uint64(c.PasswordHashParallelism), 10) },
	},
	{
		Variable: Variable{"RATE_LIMIT_LOGIN_PER_ACCOUNT_IP", "10/15m", formRate,
			"Password sign-in attempts per account (username, case-insensitive; unknown usernames count the same) from one client address (IPv6: per /64). A correct password clears that address's count, so in effect failed attempts are limited. 0 disables."},
		parse:  parseRate(func(c *Config) *Rate { return &c.LoginRateAccountIP }),
		format: func(c Config) string { return c.LoginRateAccountIP.String() },
	},
	{
		Variable: Variable{"RATE_LIMIT_LOGIN_PER_ACCOUNT", "100/24h", formRate,
			"The account's ceiling: password sign-in attempts per account from addresses it has not signed in from in the last 30 days, wherever they come from. Addresses it has signed in from skip it, so an attacker who spends it cannot lock the owner out; a correct password does not refill it. Bounds guesses per account to 2 x N in any period (N sustained) plus the per-address limit at the owner's addresses (docs/security.md). 0 disables."},
		parse:  parseRate(func(c *Config) *Rate { return &c.LoginRateAccount }),
		format: func(c Config) string { return c.LoginRateAccount.String() },
	},
	{
		Variable: Variable{"RATE_LIMIT_LOGIN_PER_IP", "100/1m", formRate,
			"Password sign-in attempts per client IP address (IPv6: per /64), successful or not. 0 disables."},
		parse:  parseRate(func(c *Config) *Rate { return &c.LoginRateIP }),
		format: func(c Config) string { return c.LoginRateIP.String() },
	},
	{
		Variable: Variable{"TRUSTED_PROXIES", "", formProxies,
			"Reverse proxies whose X-Forwarded-For header is believed. Unset: the TCP peer is the client address (for rate limits, audit logs and sessions)."},
		parse:  parseProxiesVar,
		format: func(c Config) string { return formatProxies(c.TrustedProxies) },
	},
	{
		Variable: Variable{"SHUTDOWN_TIMEOUT", "15s", formDuration,
			"How long a graceful shutdown waits for in-flight requests."},
		parse:  parseTTL(func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
		format: func(c Config) string { return FormatDuration(c.ShutdownTimeout) },
	},
	{
		Variable: Variable{"CLIENT_CACHE_TTL", "10s", formDurationOrZero,
			"How long each replica caches an OAuth client record. Deleting or updating a client (rotate-secret, update) reaches every replica's cache within a second through the revocation events; this bounds it should the event log be unreachable. 0 disables the cache (one more store round trip per request)."},
		parse: func(c *Config, raw string) string {
			d, err := ParseDuration(raw)
			if err != nil || d < 0 {
				return fmt.Sprintf("%q is not a duration (use %s)", raw, formDurationOrZero)
			}
			c.ClientCacheTTL = d
			return ""
		},
		format: func(c Config) string { return FormatDuration(c.ClientCacheTTL) },
	},
	{
		Variable: Variable{"MAX_SESSIONS_PER_USER", "100", formMaxSessions,
			"How many active sessions (signed-in devices) one user may hold. Signing in beyond it ends the user's least recently used session (audited as session.revoked, reason evicted). It also bounds the per-user session index in Redis, and so the work of listing a user's sessions."},
		parse: func(c *Config, raw string) string {
			n, err := strconv.Atoi(raw)
			if err != nil || n < 1 || n > MaxSessionsLimit {
				return fmt.Sprintf("%q is not a session cap (use %s)", raw, formMaxSessions)
			}
			c.MaxSessionsPerUser = n
			return ""
		},
		format: func(c Config) string { return strconv.Itoa(c.MaxSessionsPerUser) },
	},
	{
		Variable: Variable{"EVENTS_MAX_STREAMS_PER_CLIENT", "64", formMaxStreams,
			"How many GET /events streams one client may hold open on one replica; the next gets 429 with Retry-After. A resource server's verify.Verifier holds one, so raise it for a fleet of more instances per replica behind one client id (or give each group a client of its own)."},
		parse: func(c *Config, raw string) string {
			n, err := strconv.Atoi(raw)
			if err != nil || n < 1 || n > 10000 {
				return fmt.Sprintf("%q is not a stream cap (use %s)", raw, formMaxStreams)
			}
			c.EventsMaxStreams = n
			return ""
		},
		format: func(c Config) string { return strconv.Itoa(c.EventsMaxStreams) },
	},
	{
		Variable: Variable{"CORS_ALLOWED_ORIGINS", "", formOrigins,
			"Browser origins allowed to call the token, revocation, logout, signup and session endpoints (CORS), exactly as the browser sends them. Unset: no CORS headers."},
		parse: func(c *Config, raw string) string {
			var origins []string
			for _, o := range strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
				if problem := originProblem(o); problem != "" {
					return fmt.Sprintf("%q %s (use %s)", o, problem, formOrigins)
				}
				if !slices.Contains(origins, o) {
					origins = append(origins, o)
				}
			}
			c.CORSAllowedOrigins = origins
			return ""
		},
		format: func(c Config) string { return strings.Join(c.CORSAllowedOrigins, ",") },
	},
	{
		Variable: Variable{"DEBUG_ADDR", "", formDebugAddr,
			"Address of a separate listener serving Go's pprof profiles (/debug/pprof/). Unset: off. Never exposed on HTTP_ADDR; bind it to loopback or a private network."},
		parse:  parseListenAddr(func(c *Config) *string { return &c.DebugAddr }, formDebugAddr),
		format: func(c Config) string { return c.DebugAddr },
	},
	{
		Variable: Variable{"METRICS_ADDR", "", formMetricsAddr,
			"Address of a separate listener serving the Prometheus metrics (/metrics), and then only there: HTTP_ADDR no longer serves them. Unset: /metrics is served on HTTP_ADDR to anyone who reaches it (restrict it at the proxy). Bind it to a network only the scraper reaches."},
		parse:  parseListenAddr(func(c *Config) *string { return &c.MetricsAddr }, formMetricsAddr),
		format: func(c Config) string { return c.MetricsAddr },
	},
}

// isListenAddr accepts host:port and :port with a numeric port.
func isListenAddr(raw string) bool {
	host, port, err := net.SplitHostPort(raw)
	return err == nil && isPort(port) && !strings.ContainsAny(host, " \t")
}

// originProblem says what is wrong with a CORS origin, or "". An origin is
// what browsers send in the Origin header (RFC 6454 §6.1): a lower-case
// http or https scheme, a host, an optional port, nothing else. A wildcard
// is refused: tokend allows credentials to the listed origins, and "*"
// with credentials would let any site act as the user.
func originProblem(o string) string {
	if strings.Contains(o, "*") {
		return "is a wildcard; list each origin exactly"
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(o, "#") {
		return "is not an origin"
	}
	if u.Scheme+"://"+strings.ToLower(u.Host) != o {
		return "is not an origin as browsers send it (lower case, no trailing slash)"
	}
	return ""
}

// MaxSessionsLimit bounds MAX_SESSIONS_PER_USER: a sign-in beyond the cap
// and the listing of a user's sessions walk at most this many entries.
const MaxSessionsLimit = 10000

func parseTTL(field func(*Config) *time.Duration) func(*Config, string) string {
	return func(c *Config, raw string) string {
		d, err := ParseDuration(raw)
		if err != nil {
			return fmt.Sprintf("%q is not a duration (use %s)", raw, formDuration)
		}
		if d <= 0 {
			return fmt.Sprintf("%q must be positive (use %s)", raw, formDuration)
		}
		*field(c) = d
		return ""
	}
}

// parseListenAddr parses a listen address (isListenAddr) into field.
func parseListenAddr(field func(*Config) *string, form string) func(*Config, string) string {
	return func(c *Config, raw string) string {
		if !isListenAddr(raw) {
			return fmt.Sprintf("%q is not a listen address (use %s)", raw, form)
		}
		*field(c) = raw
		return ""
	}
}

// parseBoolField parses a boolean (parseBool's forms) into field.
func parseBoolField(field func(*Config) *bool) func(*Config, string) string {
	return func(c *Config, raw string) string {
		b, ok := parseBool(raw)
		if !ok {
			return fmt.Sprintf("%q is not a boolean (use %s)", raw, formBool)
		}
		*field(c) = b
		return ""
	}
}

// parseMin parses a duration of at least min.
func parseMin(field func(*Config) *time.Duration, min time.Duration, form string) func(*Config, string) string {
	return func(c *Config, raw string) string {
		d, err := ParseDuration(raw)
		if err != nil {
			return fmt.Sprintf("%q is not a duration (use %s)", raw, form)
		}
		if d < min {
			return fmt.Sprintf("%q is too short (use %s)", raw, form)
		}
		*field(c) = d
		return ""
	}
}

// DefaultIssuer is the issuer when JWT_ISSUER is unset: http:// and the
// listen address HTTP_ADDR, with localhost for an empty or wildcard host
// (":8080" gives http://localhost:8080, "127.0.0.1:9000" gives
// http://127.0.0.1:9000).
func DefaultIssuer(httpAddr string) string {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "http://localhost:8080"
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// LocalAddr is the address at which a process on this machine reaches a
// server listening on httpAddr: the host part of HTTP_ADDR, or 127.0.0.1
// for an empty or wildcard host.
func LocalAddr(httpAddr string) (string, error) {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return "", err
	}
	if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// SigningAlg returns the algorithm of new signing keys that name names,
// in any case (es256 is ES256), in its canonical spelling: one of
// verify.ES256, verify.EdDSA and verify.RS256. JWT_SIGNING_ALG and the
// CLI's --alg both read it.
func SigningAlg(name string) (string, error) {
	for _, alg := range []string{verify.ES256, verify.EdDSA, verify.RS256} {
		if strings.EqualFold(name, alg) {
			return alg, nil
		}
	}
	return "", fmt.Errorf("%q is not a supported algorithm (use %s)", name, formAlg)
}

// parseBool accepts true/false, 1/0, yes/no and on/off, in any case.
func parseBool(raw string) (value, ok bool) {
	switch strings.ToLower(raw) {
	case "true", "1", "yes", "on":
		return true, true
	case "false", "0", "no", "off":
		return false, true
	}
	return false, false
}

func isPort(s string) bool {
	n, err := strconv.ParseUint(s, 10, 16)
	return err == nil && n <= 65535
}

// Variables returns the documented configuration variables in documented order.
func Variables() []Variable {
	vs := make([]Variable, len(table))
	for i, v := range table {
		vs[i] = v.Variable
	}
	return vs
}

// Error is one invalid configuration value. Load joins every Error it finds
// with errors.Join; use errors.As to get at the first one.
type Error struct {
	Variable string // e.g. "JWT_REFRESH_EXPIRES_IN"
	Problem  string // the value and the accepted form, never a secret
	File     string // the config file the value came from; "" = environment or default
}

func (e *Error) Error() string {
	if e.File != "" {
		return fmt.Sprintf("%s: %s (set in config file %s)", e.Variable, e.Problem, e.File)
	}
	return e.Variable + ": " + e.Problem
}

// Load reads the configuration from file (a YAML file; "" = none) and
// environ (KEY=value strings like os.Environ(); the first occurrence of a key
// wins, as with os.Getenv), on top of the defaults. It validates everything
// and returns all problems at once.
func Load(file string, environ []string) (Config, error) {
	known := make(map[string]bool, len(table))
	for _, t := range table {
		known[strings.ToLower(t.Name)] = true
	}

	// viper decodes the file, once; checkFileKeys sees the keys as written
	// before viper folds their case.
	v := viper.NewWithOptions(viper.WithDecoderRegistry(checkedDecoders{
		base:  viper.NewCodecRegistry(),
		check: func(m map[string]any) error { return checkFileKeys(file, m, known) },
	}))
	v.SetConfigType("yaml")
	if file != "" {
		data, err := os.ReadFile(file)
		if err != nil {
			return Config{}, fmt.Errorf("config file: %w", err)
		}
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			if keys := (keyError{}); errors.As(err, &keys) {
				return Config{}, keys.err
			}
			if parse := (viper.ConfigParseError{}); errors.As(err, &parse) {
				err = parse.Unwrap() // the YAML decoder's own words
			}
			return Config{}, fmt.Errorf("config file %s: not a YAML mapping of variable names to values: %w", file, err)
		}
	}

	env := make(map[string]string)
	for _, kv := range environ {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || !known[strings.ToLower(k)] || k != strings.ToUpper(k) {
			continue
		}
		if _, seen := env[k]; !seen {
			env[k] = val
		}
	}

	var (
		c    Config
		errs []error
	)
	for _, t := range table {
		key := strings.ToLower(t.Name)
		raw, src := t.Default, ""
		if val := strings.TrimSpace(env[t.Name]); val != "" {
			raw = val
		} else if v.InConfig(key) {
			val, err := fileValue(v.Get(key), t.Name == "JWT_AUDIENCE")
			if err != nil {
				errs = append(errs, &Error{Variable: t.Name, Problem: err.Error(), File: file})
				continue
			}
			if val = strings.TrimSpace(val); val != "" {
				raw, src = val, file
			}
		}
		if raw == "" {
			continue // unset, and no default: the zero value
		}
		if problem := t.parse(&c, raw); problem != "" {
			errs = append(errs, &Error{Variable: t.Name, Problem: problem, File: src})
		}
	}

	// Defaults that depend on other variables.
	if c.Issuer == "" && c.HTTPAddr != "" {
		c.Issuer, c.IssuerDerived = DefaultIssuer(c.HTTPAddr), true
	}
	if len(c.Audience) == 0 && c.Issuer != "" {
		// RFC 9068 §2.2 makes aud required, and §3 has the server use a
		// default resource when none is requested: tokend's own URL.
		c.Audience, c.AudienceDefaulted = []string{c.Issuer}, true
	}

	// Cross-variable rules, only when both sides parsed.
	if c.DebugAddr != "" && c.DebugAddr == c.HTTPAddr {
		errs = append(errs, &Error{Variable: "DEBUG_ADDR", Problem: fmt.Sprintf(
			"%q is also HTTP_ADDR (use an address of its own, e.g. 127.0.0.1:6060: profiles are never served on the API port)", c.DebugAddr)})
	}
	if c.MetricsAddr != "" && (c.MetricsAddr == c.HTTPAddr || c.MetricsAddr == c.DebugAddr) {
		errs = append(errs, &Error{Variable: "METRICS_ADDR", Problem: fmt.Sprintf(
			"%q is also HTTP_ADDR or DEBUG_ADDR (use an address of its own, e.g. :9090)", c.MetricsAddr)})
	}
	if c.AccessTTL > 0 && c.RefreshTTL > 0 && c.RefreshTTL < c.AccessTTL {
		errs = append(errs, &Error{Variable: "JWT_REFRESH_EXPIRES_IN", Problem: fmt.Sprintf(
			"%s is shorter than JWT_ACCESS_EXPIRES_IN=%s (use a lifetime at least as long as the access token's, e.g. 24h or 7d)",
			FormatDuration(c.RefreshTTL), FormatDuration(c.AccessTTL))})
	}
	if c.PasswordHashMemory > 0 && c.PasswordHashParallelism > 0 &&
		uint64(c.PasswordHashMemory) < 8*uint64(c.PasswordHashParallelism) {
		errs = append(errs, &Error{Variable: "PASSWORD_HASH_MEMORY", Problem: fmt.Sprintf(
			"%d KiB is less than 8 x PASSWORD_HASH_PARALLELISM=%d (use %s)",
			c.PasswordHashMemory, c.PasswordHashParallelism, formMemory)})
	}

	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
	}
	return c, nil
}

// checkedDecoders is a viper.DecoderRegistry: base's decoders, with check
// run on what they decoded, its keys as the file spells them.
type checkedDecoders struct {
	base  viper.DecoderRegistry
	check func(map[string]any) error
}

func (r checkedDecoders) Decoder(format string) (viper.Decoder, error) {
	d, err := r.base.Decoder(format)
	if err != nil {
		return nil, err
	}
	return checkedDecoder{d, r.check}, nil
}

type checkedDecoder struct {
	viper.Decoder
	check func(map[string]any) error
}

func (d checkedDecoder) Decode(b []byte, m map[string]any) error {
	if err := d.Decoder.Decode(b, m); err != nil {
		return err
	}
	if err := d.check(m); err != nil {
		return keyError{err}
	}
	return nil
}

// keyError carries checkFileKeys's error through viper unchanged.
type keyError struct{ err error }

func (e keyError) Error() string { return e.err.Error() }

// checkFileKeys rejects keys that are not variables, keys given twice with
// different case, and nested values (which viper would flatten silently).
func checkFileKeys(file string, m map[string]any, known map[string]bool) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	seen := make(map[string]string, len(m))
	var errs []error
	for _, k := range keys {
		lk := strings.ToLower(k)
		if !known[lk] {
			errs = append(errs, fmt.Errorf("config file %s: unknown key %q (keys are the configuration variable names, e.g. jwt_refresh_expires_in; see docs/configuration.md)", file, k))
			continue
		}
		if prev, dup := seen[lk]; dup {
			errs = append(errs, fmt.Errorf("config file %s: key %q given twice (%q and %q)", file, lk, prev, k))
			continue
		}
		seen[lk] = k
		if _, nested := m[k].(map[string]any); nested {
			errs = append(errs, &Error{Variable: strings.ToUpper(k), Problem: "is a mapping (use a single value)", File: file})
		}
	}
	return errors.Join(errs...)
}

// fileValue turns a decoded YAML scalar (or, for lists, a sequence) into the
// string an environment variable would hold.
func fileValue(v any, list bool) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case []any:
		if !list {
			return "", errors.New("is a list (use a single value)")
		}
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, err := fileValue(e, false)
			if err != nil {
				return "", errors.New("is a nested list (use a list of strings)")
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("has an unsupported YAML type %T (use a single value)", v)
	}
}

// Argon2 returns the argon2id parameters of new password hashes:
// PASSWORD_HASH_MEMORY, _ITERATIONS and _PARALLELISM, with
// credential.DefaultArgon2's salt and key lengths.
func (c Config) Argon2() credential.Argon2Params {
	p := credential.DefaultArgon2()
	p.Memory, p.Iterations, p.Parallelism = c.PasswordHashMemory, c.PasswordHashIterations, c.PasswordHashParallelism
	return p
}

// Settings returns every variable, in documented order, with its effective
// value ("" = unset). Secrets are replaced by "REDACTED".
func (c Config) Settings() []Setting {
	ss := make([]Setting, len(table))
	for i, t := range table {
		ss[i] = Setting{Name: t.Name, Value: t.format(c), Secret: t.secret}
	}
	return ss
}

// String prints the settings as NAME=value lines, secrets redacted, so a
// Config printed with %v never shows a password.
func (c Config) String() string {
	var b strings.Builder
	for i, s := range c.Settings() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(s.Value))
	}
	return b.String()
}

// GoString makes %#v redact secrets too.
func (c Config) GoString() string { return "config.Config{" + c.String() + "}" }

// LogValue makes slog print the settings with secrets redacted.
func (c Config) LogValue() slog.Value {
	ss := c.Settings()
	attrs := make([]slog.Attr, len(ss))
	for i, s := range ss {
		attrs[i] = slog.String(s.Name, s.Value)
	}
	return slog.GroupValue(attrs...)
}

// RedactURL returns rawURL with the password of its user info, and the value
// of any query parameter whose name mentions a password, secret or token,
// replaced by "REDACTED". A value that does not parse as a URL is replaced
// entirely, since it cannot be redacted safely.
func RedactURL(rawURL string) string {
	if rawURL == "" {
		return ""
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return Redacted
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Redacted)
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k := range q {
			lk := strings.ToLower(k)
			if strings.Contains(lk, "password") || strings.Contains(lk, "secret") ||
				strings.Contains(lk, "token") || lk == "pass" || lk == "pwd" {
				for i := range q[k] {
					q[k][i] = Redacted
				}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	if at := strings.LastIndex(u.Opaque, "@"); at >= 0 {
		// scheme:opaque, as "user:password@host:6379" parses: scheme
		// "user", the password before the "@". Without one ("localhost:6379")
		// there is nothing secret in it.
		u.Opaque = Redacted + u.Opaque[at:]
	}
	return u.String()
}
