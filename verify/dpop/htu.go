package dpop

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

var errURL = errors.New("dpop: not an absolute http(s) URL")

// normalizeURL returns the http(s) URL u without its query and fragment,
// normalised as RFC 9449 §4.3 asks before htu is compared: RFC 3986
// §6.2.2 (case, percent-encoding, dot segments) and §6.2.3 (default port,
// empty path). It refuses anything but an absolute http or https URL with
// a host — a DNS name or an IP address — and no user information, and any
// character RFC 3986 §3.3 does not allow in a path.
func normalizeURL(u string) (string, error) {
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= 0x20 || c >= 0x7f || strings.IndexByte(`"<>\^`+"`{|}", c) >= 0 {
			return "", errURL
		}
	}
	if i := strings.IndexByte(u, '#'); i >= 0 {
		u = u[:i]
	}
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u = u[:i]
	}
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return "", errURL
	}
	scheme = strings.ToLower(scheme)
	var defaultPort string
	switch scheme {
	case "https":
		defaultPort = "443"
	case "http":
		defaultPort = "80"
	default:
		return "", errURL
	}
	authority, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	host, port, err := splitHostPort(authority)
	if err != nil {
		return "", err
	}
	path, err = normalizePercent(path)
	if err != nil {
		return "", err
	}
	path = removeDotSegments(path)
	if path == "" {
		path = "/"
	}
	var b strings.Builder
	b.Grow(len(scheme) + 3 + len(host) + 6 + len(path))
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	if port != "" && port != defaultPort {
		b.WriteByte(':')
		b.WriteString(port)
	}
	b.WriteString(path)
	return b.String(), nil
}

// splitHostPort splits an authority into its host, in lower case, and its
// port as a decimal number without leading zeros ("" if none).
func splitHostPort(a string) (host, port string, err error) {
	if strings.IndexByte(a, '@') >= 0 {
		// User information: not in http(s) URIs (RFC 9110 §4.2.4).
		return "", "", errURL
	}
	host = a
	if strings.HasPrefix(a, "[") { // an IP literal
		end := strings.IndexByte(a, ']')
		if end < 0 {
			return "", "", errURL
		}
		host, port = a[:end+1], a[end+1:]
		if port != "" && port[0] != ':' {
			return "", "", errURL
		}
		port = strings.TrimPrefix(port, ":")
	} else if i := strings.IndexByte(a, ':'); i >= 0 {
		host, port = a[:i], a[i+1:]
	}
	switch {
	case host == "",
		host[0] != '[' && strings.Trim(host, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-._~") != "":
		return "", "", errURL
	case host[0] == '[':
		// An IPv6 address (RFC 3986 §3.2.2), written as RFC 5952 does.
		ip, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "", "", errURL
		}
		host = "[" + ip.String() + "]"
	}
	if port != "" {
		if len(port) > 5 || strings.Trim(port, "0123456789") != "" {
			return "", "", errURL
		}
		n, err := strconv.Atoi(port)
		if err != nil || n > 65535 {
			return "", "", errURL
		}
		port = strconv.Itoa(n)
	}
	return strings.ToLower(host), port, nil
}

// normalizePercent writes each percent-encoding of p in upper case, and
// decodes those of unreserved characters (RFC 3986 §6.2.2.1, §6.2.2.2).
func normalizePercent(p string) (string, error) {
	if strings.IndexByte(p, '%') < 0 {
		return p, nil
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			b.WriteByte(p[i])
			continue
		}
		if i+2 >= len(p) {
			return "", errURL
		}
		hi, lo := unhex(p[i+1]), unhex(p[i+2])
		if hi < 0 || lo < 0 {
			return "", errURL
		}
		if c := byte(hi<<4 | lo); isUnreserved(c) {
			b.WriteByte(c)
		} else {
			const digits = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(digits[hi])
			b.WriteByte(digits[lo])
		}
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// isUnreserved: RFC 3986 §2.3.
func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// removeDotSegments is RFC 3986 §5.2.4.
func removeDotSegments(in string) string {
	if !strings.Contains(in, ".") {
		return in
	}
	var out []string // output segments, each with its leading "/" (if any)
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"):
			in = in[3:]
		case strings.HasPrefix(in, "./"):
			in = in[2:]
		case strings.HasPrefix(in, "/./"):
			in = in[2:]
		case in == "/.":
			in = "/"
		case strings.HasPrefix(in, "/../"):
			in = in[3:]
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "/..":
			in = "/"
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case in == "." || in == "..":
			in = ""
		default:
			// Move the first segment (with its leading "/") to out.
			i := strings.IndexByte(in[1:], '/')
			if i < 0 {
				out, in = append(out, in), ""
			} else {
				out, in = append(out, in[:i+1]), in[i+1:]
			}
		}
	}
	return strings.Join(out, "")
}
