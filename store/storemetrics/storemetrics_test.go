package storemetrics_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/store/memstore"
	"github.com/tokend/tokend/store/storemetrics"
	"github.com/tokend/tokend/store/storetest"
)

// Every call is timed under its operation; answers such as "not found" are
// not errors; a store that cannot answer is counted.
func TestMeasured(t *testing.T) {
	reg := prometheus.NewRegistry()
	inner := memstore.New()
	st, err := storemetrics.Wrap(inner, reg)
	if err != nil {
		t.Fatal(err)
	}
	var _ store.Store = st
	ctx := context.Background()
	if _, err := st.User(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("User: %v", err)
	}
	if err := st.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Rotate(ctx, store.Rotation{Presentation: store.Presentation{UserID: "u", SessionID: "s", Now: time.Now()}}); !errors.Is(err, store.ErrTokenUnknown) {
		t.Fatalf("Rotate: %v", err)
	}
	inner.Close()
	if err := st.Ping(ctx); err == nil {
		t.Fatal("Ping of a closed store succeeded")
	}

	for op, want := range map[string]float64{"ping": 1, "rotate": 0, "user": 0} {
		if got := value(t, reg, "tokend_store_errors_total", op); got != want {
			t.Errorf("errors{operation=%q} = %v, want %v", op, got, want)
		}
	}
	timed := samples(t, reg)
	if len(timed) != 3 || timed["user"] != 1 || timed["ping"] != 2 || timed["rotate"] != 1 {
		t.Fatalf("timed calls %v, want user 1, ping 2, rotate 1", timed)
	}
	// Two stores in one registry clash; in two registries they do not.
	if _, err := storemetrics.Wrap(inner, reg); err == nil {
		t.Fatal("registering twice in one registry succeeded")
	}
	if _, err := storemetrics.Wrap(inner, prometheus.NewRegistry()); err != nil {
		t.Fatal(err)
	}
}

// Every method of store.Store is in the operations table, and every
// measured one is timed under its own label: a method added to
// store.Store fails here until the decorator measures it (or says it
// does not).
func TestEveryMethodMeasured(t *testing.T) {
	storetest.CheckMethodTable(t, "storemetrics' operations", storemetrics.Operations)
	reg := prometheus.NewRegistry()
	st, err := storemetrics.Wrap(memstore.New(), reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range storetest.Methods() {
		if m != "Close" {
			_ = storetest.Call(context.Background(), st, m) // zero arguments: an answer or a refusal, either is timed
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	timed := samples(t, reg)
	for m, label := range storemetrics.Operations {
		if label == "" {
			continue
		}
		if timed[label] != 1 {
			t.Errorf("%s timed %d times under operation=%q, want 1", m, timed[label], label)
		}
	}
	if len(timed) != len(storemetrics.Operations)-1 {
		t.Errorf("timed operations %v, want one per method but Close", timed)
	}
}

// samples returns the number of timed calls by operation label.
func samples(t *testing.T, reg *prometheus.Registry) map[string]uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	timed := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() == "tokend_store_operation_duration_seconds" {
			for _, m := range mf.GetMetric() {
				timed[m.GetLabel()[0].GetValue()] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	return timed
}

// value returns the counter of name with operation=op.
func value(t *testing.T, reg *prometheus.Registry, name, op string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" && l.GetValue() == op {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{operation=%q}", name, op)
	return 0
}

// The measured store is transparent: it passes the whole conformance suite.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		st, err := storemetrics.Wrap(memstore.New(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	})
}
