// Package testkit holds the small helpers the tests of several packages
// share: a buffer a test reads while the code under test writes to it, and
// the hand-made JWTs of the token tests (edit a header or claims map,
// encode and sign it as given, decode one). It imports only the standard
// library and golang-jwt, so any package's tests can use it. The verify
// module keeps its own copies: it is a module of its own.
package testkit

import (
	"bytes"
	"sync"
)

// SyncBuffer is a buffer safe for concurrent use: a log destination the
// test reads with String while the code under test writes to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
