package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Rate is "N per Period", e.g. 10 sign-in attempts per 15 minutes. The
// zero Rate (N = 0) means no limit.
type Rate struct {
	N      int
	Period time.Duration
}

// Enabled reports whether the rate limits anything.
func (r Rate) Enabled() bool { return r.N > 0 && r.Period > 0 }

// String formats the rate as the variables take it: "10/15m", or "0".
func (r Rate) String() string {
	if !r.Enabled() {
		return "0"
	}
	return strconv.Itoa(r.N) + "/" + FormatDuration(r.Period)
}

const (
	formRate    = "N/period, e.g. 10/15m (N attempts per period), or 0 to disable"
	formProxies = "comma- or space-separated IP addresses or CIDR ranges, e.g. 10.0.0.0/8,192.168.1.10"
	maxRateN    = 1_000_000
)

// ParseRate parses "N/period" (period in Go syntax or days) or "0".
func ParseRate(raw string) (Rate, error) {
	if strings.TrimSpace(raw) == "0" {
		return Rate{}, nil
	}
	ns, ps, ok := strings.Cut(raw, "/")
	if !ok {
		return Rate{}, fmt.Errorf("%q is not a rate (use %s)", raw, formRate)
	}
	n, err := strconv.Atoi(strings.TrimSpace(ns))
	if err != nil || n < 0 || n > maxRateN {
		return Rate{}, fmt.Errorf("%q is not a rate: N must be a whole number from 0 to %d (use %s)", raw, maxRateN, formRate)
	}
	p, err := ParseDuration(strings.TrimSpace(ps))
	if err != nil || p <= 0 {
		return Rate{}, fmt.Errorf("%q is not a rate: the period must be a positive duration (use %s)", raw, formRate)
	}
	if n == 0 {
		return Rate{}, nil
	}
	return Rate{N: n, Period: p}, nil
}

func parseRate(field func(*Config) *Rate) func(*Config, string) string {
	return func(c *Config, raw string) string {
		r, err := ParseRate(raw)
		if err != nil {
			return err.Error()
		}
		*field(c) = r
		return ""
	}
}

// ParseProxies parses a list of IP addresses and CIDR ranges; a bare
// address is a range of one.
func ParseProxies(raw string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.FieldsFunc(raw, func(r rune) bool { return r == ',' || unicode.IsSpace(r) }) {
		var p netip.Prefix
		if strings.Contains(f, "/") {
			q, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("%q is not an IP address or CIDR range (use %s)", f, formProxies)
			}
			p = q.Masked()
		} else {
			a, err := netip.ParseAddr(f)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q is not an IP address or CIDR range (use %s)", f, formProxies)
			}
			a = a.Unmap()
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		out = append(out, p)
	}
	return out, nil
}

func formatProxies(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func parseProxiesVar(c *Config, raw string) string {
	ps, err := ParseProxies(raw)
	if err != nil {
		return err.Error()
	}
	c.TrustedProxies = ps
	return ""
}
