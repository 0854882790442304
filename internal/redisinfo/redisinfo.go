// Package redisinfo reads the reply of Redis's INFO command: "# Section"
// header lines and "field:value" lines, separated by CRLF. The commandstats
// section's values are themselves "key=value" lists
// ("cmdstat_get:calls=2,usec=5,usec_per_call=2.50,...").
package redisinfo

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Info is the fields of one INFO reply, by name.
type Info map[string]string

// Parse reads an INFO reply. Section headers and blank lines are skipped;
// a field's value is everything after its first colon.
func Parse(reply string) Info {
	info := Info{}
	for _, line := range strings.Split(reply, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			info[k] = v
		}
	}
	return info
}

// Read runs INFO for one section ("memory", "cpu", "replication", ...)
// and parses the reply.
func Read(ctx context.Context, c redis.Cmdable, section string) (Info, error) {
	reply, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("INFO %s: %w", section, err)
	}
	return Parse(reply), nil
}

// Int is a field's value as an integer; false when the field is absent or
// not an integer.
func (i Info) Int(field string) (int64, bool) {
	n, err := strconv.ParseInt(i[field], 10, 64)
	return n, err == nil
}

// Float is a field's value as a number; false when the field is absent or
// not a number.
func (i Info) Float(field string) (float64, bool) {
	f, err := strconv.ParseFloat(i[field], 64)
	return f, err == nil
}

// CPUSeconds is the CPU time the server has used so far, user plus
// system (INFO cpu: used_cpu_user, used_cpu_sys).
func CPUSeconds(ctx context.Context, c redis.Cmdable) (float64, error) {
	info, err := Read(ctx, c, "cpu")
	if err != nil {
		return 0, err
	}
	user, ok1 := info.Float("used_cpu_user")
	sys, ok2 := info.Float("used_cpu_sys")
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("INFO cpu: no used_cpu_user or used_cpu_sys")
	}
	return user + sys, nil
}

// CommandStat is one command's line of INFO commandstats: how many times
// it ran and the microseconds it took in all (the command's own work,
// not reading or answering it).
type CommandStat struct {
	Calls int64
	Usec  float64
}

// CommandStats reads INFO commandstats, by command name as Redis writes
// it after "cmdstat_" ("get", "evalsha", "config|resetstat").
func CommandStats(ctx context.Context, c redis.Cmdable) (map[string]CommandStat, error) {
	info, err := Read(ctx, c, "commandstats")
	if err != nil {
		return nil, err
	}
	stats := map[string]CommandStat{}
	for field, value := range info {
		name, ok := strings.CutPrefix(field, "cmdstat_")
		if !ok {
			continue
		}
		var st CommandStat
		for _, kv := range strings.Split(value, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				st.Calls, err = strconv.ParseInt(v, 10, 64)
			case "usec":
				st.Usec, err = strconv.ParseFloat(v, 64)
			}
			if err != nil {
				return nil, fmt.Errorf("INFO commandstats: %s: %w", field, err)
			}
		}
		stats[name] = st
	}
	return stats, nil
}
