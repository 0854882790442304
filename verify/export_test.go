package verify

// CacheLen is the number of tokens v's verified-token cache holds, for
// the tests of package verify_test.
func CacheLen(v *Verifier) int { return v.cache.len() }
