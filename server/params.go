package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// maxBodyBytes bounds OAuth request bodies (docs/security.md, "Availability").
const maxBodyBytes = 64 << 10

// params are the single-valued parameters of an OAuth request body.
type params map[string]string

// readParams reads an application/x-www-form-urlencoded or application/json
// body. Each parameter may appear once (RFC 6749 §3.2); JSON values must be
// strings. A request with any URL query is refused: credentials are never
// read from the URL.
func readParams(w http.ResponseWriter, r *http.Request) (params, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		e := invalidRequest("method must be POST")
		e.status = http.StatusMethodNotAllowed
		return nil, e
	}
	if r.URL.RawQuery != "" {
		return nil, invalidRequest("parameters must be sent in the request body, not in the URL query")
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" && r.ContentLength == 0 {
		// No body at all, e.g. a logout whose token is in the
		// Authorization header: no parameters.
		return params{}, nil
	}
	mt := ct
	if ct != formType { // the usual header needs no parsing
		var err error
		mt, _, err = mime.ParseMediaType(ct)
		if ct == "" || err != nil {
			return nil, invalidRequest("Content-Type must be application/x-www-form-urlencoded or application/json")
		}
	}
	body := http.MaxBytesReader(w, r.Body, maxBodyBytes)
	data, err := io.ReadAll(body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			e := invalidRequest("request body is larger than 64 KiB")
			e.status = http.StatusRequestEntityTooLarge
			return nil, e
		}
		return nil, invalidRequest("request body could not be read")
	}
	switch mt {
	case formType:
		return parseForm(data)
	case "application/json":
		return parseJSON(data)
	default:
		return nil, invalidRequest("Content-Type must be application/x-www-form-urlencoded or application/json")
	}
}

const formType = "application/x-www-form-urlencoded"

// maxFormParams is url.ParseQuery's default limit on parameters.
const maxFormParams = 10000

// parseForm decodes a form body straight into params: the same splitting,
// unescaping and errors as url.ParseQuery (an invalid body is refused as a
// whole; a repeated parameter is refused), without the url.Values map and a
// slice per value. TestParseFormMatchesParseQuery holds it to ParseQuery.
func parseForm(data []byte) (params, error) {
	q := string(data)
	if strings.Count(q, "&") >= maxFormParams { // ParseQuery's own limit
		return nil, invalidRequest("request body is not valid form encoding")
	}
	p := make(params, 8)
	var repeated string
	isRepeated := false
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		if strings.Contains(kv, ";") {
			return nil, invalidRequest("request body is not valid form encoding")
		}
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, err1 := url.QueryUnescape(k)
		v, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return nil, invalidRequest("request body is not valid form encoding")
		}
		if _, dup := p[k]; dup && !isRepeated {
			repeated, isRepeated = k, true
		}
		p[k] = v
	}
	if isRepeated {
		return nil, invalidRequest("parameter " + quoteParam(repeated) + " is repeated")
	}
	return p, nil
}

// parseJSON reads a JSON object of string values. A name given twice is
// refused, as a repeated form parameter is (RFC 6749 §3.1): encoding/json
// alone would silently keep the last one.
func parseJSON(data []byte) (params, error) {
	notObject := invalidRequest("request body is not a JSON object")
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, notObject
	}
	p := make(params)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, notObject
		}
		k, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, notObject
		}
		if _, dup := p[k]; dup {
			return nil, invalidRequest("parameter " + quoteParam(k) + " is repeated")
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, invalidRequest("parameter " + quoteParam(k) + " must be a JSON string")
		}
		p[k] = s
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, notObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, notObject // trailing data after the object
	}
	return p, nil
}

// quoteParam names a parameter in an error description without echoing
// arbitrary client bytes at length.
func quoteParam(k string) string {
	if len(k) > 40 {
		k = k[:40] + "…"
	}
	return `"` + strings.ToValidUTF8(k, "?") + `"`
}

// require returns the named parameter or an invalid_request error.
func (p params) require(name string) (string, error) {
	v := p[name]
	if v == "" {
		return "", invalidRequest("missing parameter " + quoteParam(name))
	}
	return v, nil
}

// clientCredentials are what the caller presented to authenticate.
type clientCredentials struct {
	id, secret string
	basic      bool // sent with HTTP Basic (client_secret_basic)
}

// presentedClient extracts client credentials from the Authorization header
// (client_secret_basic, RFC 6749 §2.3.1: id and secret form-encoded, then
// base64) or from the body (client_secret_post, or a public client's
// client_id alone). Using both methods at once is refused.
func presentedClient(r *http.Request, p params) (clientCredentials, error) {
	// Only HTTP Basic authenticates a client here. Any other scheme (a
	// frontend's habitual "Bearer <access token>") is not client
	// authentication and is left to the handler (see bearerToken); the body
	// must then identify the client.
	if scheme, payload, _ := strings.Cut(r.Header.Get("Authorization"), " "); strings.EqualFold(scheme, "Basic") {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(payload))
		if err != nil {
			return clientCredentials{}, invalidClient("malformed HTTP Basic credentials")
		}
		id, secret, ok := strings.Cut(string(raw), ":")
		if !ok {
			return clientCredentials{}, invalidClient("malformed HTTP Basic credentials")
		}
		id, err1 := url.QueryUnescape(id)
		secret, err2 := url.QueryUnescape(secret)
		if err1 != nil || err2 != nil || id == "" {
			return clientCredentials{}, invalidClient("malformed HTTP Basic credentials")
		}
		if _, ok := p["client_secret"]; ok {
			return clientCredentials{}, invalidRequest("use one client authentication method, not HTTP Basic and client_secret together")
		}
		if bid, ok := p["client_id"]; ok && bid != id {
			return clientCredentials{}, invalidRequest("client_id in the body differs from the HTTP Basic client")
		}
		return clientCredentials{id: id, secret: secret, basic: true}, nil
	}
	id := p["client_id"]
	if id == "" {
		return clientCredentials{}, errNoClient
	}
	return clientCredentials{id: id, secret: p["client_secret"]}, nil
}

// errNoClient: the request neither authenticates with HTTP Basic nor names
// a client_id in the body.
var errNoClient = invalidClient("client authentication required: send client_id (and client_secret for a confidential client)")

// bearerToken returns the token of an "Authorization: Bearer" header
// (RFC 6750 §2.1), or "".
func bearerToken(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}
