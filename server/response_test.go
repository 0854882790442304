package server

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// appendToken must write exactly what encoding/json writes for the same
// tokenResponse, escaping included: the hand-written encoder is only a
// faster way to the same bytes.
func TestAppendTokenMatchesEncodingJSON(t *testing.T) {
	cases := []tokenResponse{
		{AccessToken: "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", TokenType: "Bearer", ExpiresIn: 900, RefreshToken: "rt_abc_def", Scope: "read write"},
		{AccessToken: "a", TokenType: "Bearer", ExpiresIn: 0},
		{AccessToken: "a", TokenType: "Bearer", ExpiresIn: -1, Scope: "x"},
		{AccessToken: "a", TokenType: "Bearer", ExpiresIn: 1 << 40, RefreshToken: "r"},
		{AccessToken: `q"uote\back`, TokenType: "Bearer", Scope: "<script>&amp;"},
		{AccessToken: "ctl\x00\x1f\n\t", TokenType: "Bearer", Scope: "ünïcode \u2028 \xff"},
		{},
	}
	for _, tc := range cases {
		var want bytes.Buffer
		if err := json.NewEncoder(&want).Encode(tc); err != nil {
			t.Fatal(err)
		}
		if got := appendToken(nil, tc); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("appendToken(%+v)\n got %s\nwant %s", tc, got, want.Bytes())
		}
	}
}

func FuzzAppendToken(f *testing.F) {
	f.Add("eyJ.a.b", "rt_x", "read write", int64(900))
	f.Add("\"<>&\\", "\x00", "\xff\u2028", int64(-5))
	f.Fuzz(func(t *testing.T, at, rt, scope string, exp int64) {
		tc := tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: exp, RefreshToken: rt, Scope: scope}
		var want bytes.Buffer
		_ = json.NewEncoder(&want).Encode(tc)
		if got := appendToken(nil, tc); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("got %q want %q", got, want.Bytes())
		}
	})
}

// writeToken answers in one Write with the no-store JSON headers.
func TestWriteTokenOneWrite(t *testing.T) {
	rec := &countingRecorder{ResponseRecorder: httptest.NewRecorder()}
	writeToken(rec, tokenResponse{AccessToken: "a", TokenType: "Bearer", ExpiresIn: 60, Scope: "read"})
	if rec.writes != 1 || rec.Code != 200 {
		t.Fatalf("%d writes, status %d", rec.writes, rec.Code)
	}
	h := rec.Header()
	if h.Get("Content-Type") != "application/json;charset=UTF-8" || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Errorf("headers %v", h)
	}
	if got := rec.Body.String(); got != `{"access_token":"a","token_type":"Bearer","expires_in":60,"scope":"read"}`+"\n" {
		t.Errorf("body %s", got)
	}
}

type countingRecorder struct {
	*httptest.ResponseRecorder
	writes int
}

func (c *countingRecorder) Write(b []byte) (int, error) {
	c.writes++
	return c.ResponseRecorder.Write(b)
}

// parseForm accepts, refuses and decodes exactly as the url.ParseQuery
// based parser it replaced.
func TestParseFormMatchesParseQuery(t *testing.T) {
	for _, body := range []string{
		"", "a=1", "a=1&b=2", "a=1&a=2", "a", "a=", "=x", "&&a=1&&", "a=%41%20b+c", "a=%zz", "a=1;b=2", "a=1&b=%",
		"grant_type=refresh_token&client_id=web&refresh_token=rt_x", "a=1&b=2&a=3&b=4", "%=1", "k=v=w",
		strings.Repeat("x=1&", 10001),
	} {
		checkParseForm(t, body)
	}
}

func FuzzParseForm(f *testing.F) {
	f.Add("grant_type=password&username=a%40b&password=x+y")
	f.Add("a=1&a=2;b")
	f.Fuzz(func(t *testing.T, body string) { checkParseForm(t, body) })
}

func checkParseForm(t *testing.T, body string) {
	t.Helper()
	got, err := parseForm([]byte(body))
	vals, qerr := url.ParseQuery(body)
	if qerr != nil {
		if err == nil || !strings.Contains(err.Error(), "not valid form encoding") {
			t.Fatalf("%.80q: ParseQuery refuses (%v), parseForm gives %v, %v", body, qerr, got, err)
		}
		return
	}
	for k, v := range vals {
		if len(v) > 1 {
			if err == nil || !strings.Contains(err.Error(), "is repeated") {
				t.Fatalf("%.80q: %q is repeated, parseForm gives %v, %v", body, k, got, err)
			}
			return
		}
	}
	if err != nil || len(got) != len(vals) {
		t.Fatalf("%.80q: parseForm %v, %v; ParseQuery %v", body, got, err, vals)
	}
	for k, v := range vals {
		if got[k] != v[0] {
			t.Fatalf("%.80q: %q = %q, want %q", body, k, got[k], v[0])
		}
	}
}
