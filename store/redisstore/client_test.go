package redisstore

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// NewClient sets tokend's outage defaults, and a URL option still wins
// (max_retries=-1 is go-redis for "none", which Options reports as 0).
func TestNewClientOutageDefaults(t *testing.T) {
	rdb, err := NewClient("redis://127.0.0.1:6379/0")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	o := rdb.(*redis.Client).Options()
	if o.DialTimeout != DialTimeout || o.ReadTimeout != ReadTimeout || o.WriteTimeout != WriteTimeout ||
		o.MaxRetries != MaxRetries || o.MaxRetryBackoff != MaxRetryBackoff || o.DialerRetries != DialerRetries {
		t.Errorf("single node: %+v", o)
	}
	rdb2, err := NewClient("redis://127.0.0.1:6379/0?dial_timeout=7s&max_retries=-1&read_timeout=9s")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb2.Close()
	if o := rdb2.(*redis.Client).Options(); o.DialTimeout != 7*time.Second || o.MaxRetries != 0 || o.ReadTimeout != 9*time.Second {
		t.Errorf("URL options lost: dial %v retries %d read %v", o.DialTimeout, o.MaxRetries, o.ReadTimeout)
	}
	cl, err := NewClient("redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if o := cl.(*redis.ClusterClient).Options(); o.DialTimeout != DialTimeout || o.MaxRetries != MaxRetries || o.DialerRetries != DialerRetries {
		t.Errorf("cluster: dial %v retries %d dialer %d", o.DialTimeout, o.MaxRetries, o.DialerRetries)
	}
	sn, err := NewClient("redis+sentinel://127.0.0.1:26379/0?master_name=m")
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
}
