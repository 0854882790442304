package storetest

import (
	"context"
	"reflect"
	"slices"
	"testing"

	"github.com/tokend/tokend/store"
)

// Decorators of store.Store (store/storemetrics, store/clientcache,
// events) write out every method and keep a table saying what each
// method does there. The compiler catches a method added to store.Store
// that a decorator does not implement; CheckMethodTable catches a table
// that does not say what the decorator decided for it.

// Methods returns the names of store.Store's methods, sorted.
func Methods() []string {
	it := reflect.TypeFor[store.Store]()
	names := make([]string, it.NumMethod())
	for i := range names {
		names[i] = it.Method(i).Name
	}
	return names
}

// CheckMethodTable fails t unless table has exactly one entry per method
// of store.Store. what names the table in the failure.
func CheckMethodTable[V any](t testing.TB, what string, table map[string]V) {
	t.Helper()
	methods := Methods()
	for _, m := range methods {
		if _, ok := table[m]; !ok {
			t.Errorf("%s does not say what store.Store's method %s does", what, m)
		}
	}
	for m := range table {
		if !slices.Contains(methods, m) {
			t.Errorf("%s lists %s, which is not a method of store.Store", what, m)
		}
	}
}

// Call calls st's method named method with ctx and the zero value of
// every other argument, and returns its error result.
func Call(ctx context.Context, st store.Store, method string) error {
	m := reflect.ValueOf(st).MethodByName(method)
	mt := m.Type()
	args := make([]reflect.Value, mt.NumIn())
	for i := range args {
		args[i] = reflect.Zero(mt.In(i))
	}
	if mt.NumIn() > 0 && mt.In(0) == reflect.TypeFor[context.Context]() {
		args[0] = reflect.ValueOf(ctx)
	}
	out := m.Call(args)
	err, _ := out[len(out)-1].Interface().(error)
	return err
}
