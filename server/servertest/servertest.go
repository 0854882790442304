// Package servertest is a test helper: it fills in, for tests that build a
// server.Server directly, the options they do not care about. server.New
// invents no defaults, so these come from the configuration's.
package servertest

import (
	"log/slog"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/keys"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/token"
)

// Defaults returns o with the required options a test left zero set: the
// durations to the configuration's defaults (config.Load with nothing
// set), the refresh keys to an ephemeral key and the logger to one that
// discards. What a test is about — the store, tokens, keys, password
// hasher and issuer — it still sets itself.
func Defaults(o server.Options) server.Options {
	cfg, err := config.Load("", nil)
	if err != nil {
		panic("servertest: the default configuration does not load: " + err.Error())
	}
	if o.RefreshTTL == 0 {
		o.RefreshTTL = cfg.RefreshTTL
	}
	if o.JWKSMaxAge == 0 {
		o.JWKSMaxAge = cfg.JWKSMaxAge
	}
	if o.RefreshKeys == nil {
		o.RefreshKeys = token.StaticRefreshKeys{Set: keys.EphemeralRefresh()}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
