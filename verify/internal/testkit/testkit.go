// Package testkit holds what the tests of the verify module's packages
// share.
package testkit

import "maps"

// Edit returns a copy of m with the pairs of kv (key, value, key, value,
// ...) applied: each key set to its value, or deleted when the value is
// nil. m itself is not changed.
func Edit(m map[string]any, kv ...any) map[string]any {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]any{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}
