package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses a duration in Go syntax (time.ParseDuration: "90m",
// "1h30m", "2.5s", "-1h") extended with a day unit "d" of exactly 24 hours
// ("7d", "1d12h", "1.5d"). Days may be combined with every other unit and
// carry a decimal fraction, exactly like the Go units.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	bad := func() (time.Duration, error) {
		return 0, fmt.Errorf("invalid duration %q", orig)
	}
	if s == "" {
		return bad()
	}
	neg := false
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return bad()
	}
	var total time.Duration
	for s != "" {
		// number: [0-9]*(\.[0-9]*)?
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		num := s[:i]
		if num == "" || num == "." || strings.Count(num, ".") > 1 {
			return bad()
		}
		s = s[i:]
		// unit: everything up to the next number
		j := 0
		for j < len(s) && !(s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
			j++
		}
		unit := s[:j]
		s = s[j:]
		if unit == "" {
			return bad() // "missing unit", as in time.ParseDuration
		}
		var part time.Duration
		if unit == "d" {
			// Parse the count as hours (exact decimal arithmetic in
			// time.ParseDuration) and scale by 24, checking for overflow.
			h, err := time.ParseDuration(num + "h")
			if err != nil || h > math.MaxInt64/24 {
				return bad()
			}
			part = h * 24
		} else {
			p, err := time.ParseDuration(num + unit)
			if err != nil {
				return bad()
			}
			part = p
		}
		if total > math.MaxInt64-part {
			return bad() // overflow
		}
		total += part
	}
	if neg {
		total = -total
	}
	return total, nil
}

// FormatDuration renders d compactly in a form ParseDuration reads back to
// the same value: 15m, 1h30m, 24h, 36h, 7d (whole numbers of days from two
// days up use the day unit). Sub-second values fall back to Go syntax.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	if d%time.Second != 0 || d == math.MinInt64 {
		return d.String()
	}
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	const day = 24 * time.Hour
	if d%day == 0 && d >= 2*day {
		b.WriteString(strconv.FormatInt(int64(d/day), 10))
		b.WriteString("d")
		return b.String()
	}
	units := []struct {
		suffix string
		size   time.Duration
	}{{"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}}
	for _, u := range units {
		if n := d / u.size; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u.suffix)
			d -= n * u.size
		}
	}
	return b.String()
}
