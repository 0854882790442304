package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokend/tokend/store"
)

// metrics are the server's Prometheus collectors, registered in the
// registry of Options.Metrics (or one of the server's own), never in the
// global default registry. Every label has a bounded set of values: routes
// are the router's patterns (never raw paths), grant types and outcomes
// are fixed vocabularies.
type metrics struct {
	reg         *prometheus.Registry
	handler     http.Handler             // GET /metrics
	requests    *prometheus.CounterVec   // route, code
	duration    *prometheus.HistogramVec // route
	grants      *prometheus.CounterVec   // grant, outcome
	reuse       *prometheus.CounterVec   // via, cause
	rotations   *prometheus.CounterVec   // outcome
	rateLimited *prometheus.CounterVec   // limit

	eventStreams prometheus.Gauge   // open GET /events streams
	eventsSent   prometheus.Counter // events written to GET /events streams
	eventGaps    prometheus.Counter // streams that started with a gap event
	// eventStreamsEnded counts streams tokend ended because of their
	// reader: reader_revoked, token_expired.
	eventStreamsEnded *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tokend_http_request_duration_seconds",
			Help:    "HTTP request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		grants: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_grants_total",
			Help: "Token requests by grant type and outcome (success or the OAuth error code).",
		}, []string{"grant", "outcome"}),
		reuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_refresh_reuse_detected_total",
			Help: "Used refresh tokens presented again, treated as theft (the session is revoked), by where (refresh grant or logout) and cause (window_expired: the token just rotated, presented after REFRESH_REUSE_WINDOW; child_used: an older token).",
		}, []string{"via", "cause"}),
		rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_refresh_rotations_total",
			Help: "Accepted refresh-token presentations by outcome: rotated (the current token), retried (the token just rotated, presented again within REFRESH_REUSE_WINDOW: answered with the same child, nothing written), recovered (a genuine token ahead of the store, after a lost write).",
		}, []string{"outcome"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_login_rate_limited_total",
			Help: "Password sign-in attempts refused by the rate limiter, by limit: ip, account_ip (one account from one address) or account (the account ceiling).",
		}, []string{"limit"}),
		eventStreams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokend_events_streams",
			Help: "Open GET /events streams on this replica.",
		}),
		eventsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokend_events_sent_total",
			Help: "Revocation events written to GET /events streams.",
		}),
		eventGaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tokend_events_gaps_total",
			Help: "GET /events streams that resumed from before the retained history (the consumer may have missed revocations).",
		}),
		eventStreamsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokend_events_streams_ended_total",
			Help: "GET /events streams tokend ended because of their reader, by reason: reader_revoked (its client deleted, its secret rotated, events:read or the token's validity taken away) or token_expired (its Bearer token ran out).",
		}, []string{"reason"}),
	}
	m.handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError})
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.grants, m.reuse, m.rotations, m.rateLimited, m.eventStreams, m.eventsSent, m.eventGaps, m.eventStreamsEnded} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Series that should read 0 rather than be absent before the first event.
	for _, via := range []string{"refresh", "logout"} {
		for _, cause := range []string{store.CauseWindowExpired, store.CauseChildUsed} {
			m.reuse.WithLabelValues(via, cause)
		}
	}
	for _, o := range []store.Outcome{store.OutcomeRotated, store.OutcomeRetried, store.OutcomeRecovered} {
		m.rotations.WithLabelValues(o.String())
	}
	for _, l := range []string{"ip", "account"} {
		m.rateLimited.WithLabelValues(l)
	}
	for _, r := range []string{"reader_revoked", "token_expired"} {
		m.eventStreamsEnded.WithLabelValues(r)
	}
	return m, nil
}

// observeRequest counts a finished request under its route pattern.
func (m *metrics) observeRequest(pattern string, status int, d time.Duration) {
	if pattern == "" {
		pattern = "unmatched" // 404s and 405s from the router itself
	}
	m.requests.WithLabelValues(pattern, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(pattern).Observe(d.Seconds())
}

// grantLabel bounds the grant label to the grants tokend knows.
func grantLabel(grant string) string {
	switch oauth2.GrantType(grant) {
	case oauth2.PasswordCredentials, oauth2.Refreshing, oauth2.ClientCredentials:
		return grant
	case "":
		return "none"
	default:
		return "other"
	}
}

// observeGrant counts a token request's outcome: "success" or the OAuth
// error code ("canceled" when the caller went away).
func (m *metrics) observeGrant(ctx context.Context, grant string, err error) {
	outcome := "success"
	if err != nil {
		var e *oauthError
		switch {
		case errors.As(err, &e):
			outcome = e.code.Error()
		case ctx.Err() != nil:
			outcome = "canceled"
		default:
			outcome = "server_error"
		}
	}
	m.grants.WithLabelValues(grantLabel(grant), outcome).Inc()
}

// handleMetrics is GET /metrics: the Prometheus text exposition of the
// server's registry.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	s.metrics.handler.ServeHTTP(w, r)
}

// MetricsHandler serves GET /metrics alone, for a listener of its own
// (Options.MetricsElsewhere); every other path is a 404. Scrapes through
// it are neither logged nor counted in the request metrics.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	return mux
}
