package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops bounds how many X-Forwarded-For entries are examined.
const maxForwardedHops = 32

// clientAddr works out the client's IP address once per request (the
// observe middleware stores it; clientIP reads it). Without trusted
// proxies it is the TCP peer. When the peer is a trusted proxy, the
// X-Forwarded-For entries (all header lines, in order) are walked from the
// right: each trusted proxy is skipped, and the first address that is not
// one is the client — the left-most entries are whatever the client chose
// to send and are never believed. An entry that is not an IP address ends
// the walk at the last good address.
func (s *Server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	peer = peer.Unmap().WithZone("")
	if !s.trusted(peer) {
		return peer.String()
	}
	client := peer
	hops := 0
	lines := r.Header.Values("X-Forwarded-For")
	for i := len(lines) - 1; i >= 0; i-- {
		entries := strings.Split(lines[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			e := strings.TrimSpace(entries[j])
			if e == "" && len(entries) > 1 {
				continue
			}
			if hops++; hops > maxForwardedHops {
				return client.String()
			}
			a, ok := parseHop(e)
			if !ok {
				return client.String()
			}
			client = a
			if !s.trusted(a) {
				return a.String()
			}
		}
	}
	return client.String()
}

// trusted reports whether a is one of the configured proxies.
func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.o.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop parses one X-Forwarded-For entry: an address, optionally with a
// port ("1.2.3.4:5", "[2001:db8::1]:5").
func parseHop(e string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(e)
	if err != nil {
		ap, err := netip.ParseAddrPort(e)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone(""), true
}
