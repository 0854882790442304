package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	oautherrors "github.com/go-oauth2/oauth2/v4/errors"
)

// oauthError is an RFC 6749 §5.2 error answer. Code is one of go-oauth2's
// error values, whose text is the RFC error code; the HTTP status is ours
// (go-oauth2's table answers 401 where RFC 6749 §5.2 says 400).
type oauthError struct {
	code   error
	desc   string
	status int
	header http.Header
	cause  error // for the log only; never sent
}

func (e *oauthError) Error() string {
	if e.cause != nil {
		return e.code.Error() + ": " + e.desc + ": " + e.cause.Error()
	}
	return e.code.Error() + ": " + e.desc
}

func (e *oauthError) Unwrap() error { return e.cause }

// statusFor maps an RFC 6749 error code to the status docs/design.md ("Decisions of our own") gives it: RFC 6749 §5.2's 400, 401 for invalid_client.
func statusFor(code error) int {
	switch code {
	case oautherrors.ErrInvalidClient:
		return http.StatusUnauthorized
	case oautherrors.ErrAccessDenied:
		return http.StatusForbidden
	case oautherrors.ErrServerError:
		return http.StatusInternalServerError
	case oautherrors.ErrTemporarilyUnavailable:
		return http.StatusServiceUnavailable
	default: // invalid_request, invalid_grant, invalid_scope, unauthorized_client, unsupported_grant_type
		return http.StatusBadRequest
	}
}

func newError(code error, desc string) *oauthError {
	return &oauthError{code: code, desc: desc, status: statusFor(code)}
}

func invalidRequest(desc string) *oauthError {
	return newError(oautherrors.ErrInvalidRequest, desc)
}

func invalidGrant(desc string) *oauthError {
	return newError(oautherrors.ErrInvalidGrant, desc)
}

func invalidClient(desc string) *oauthError {
	e := newError(oautherrors.ErrInvalidClient, desc)
	e.header = http.Header{"Www-Authenticate": {`Basic realm="tokend", charset="UTF-8"`}}
	return e
}

// retryAfterSeconds is what a 503 tells clients to wait.
const retryAfterSeconds = 1

// unavailable is the answer when the store cannot be reached: a 503 with
// Retry-After, so clients retry with the same (unspent) refresh token.
func unavailable(cause error) *oauthError {
	e := newError(oautherrors.ErrTemporarilyUnavailable, "the token store is unavailable, retry later")
	e.header = http.Header{"Retry-After": {strconv.Itoa(retryAfterSeconds)}}
	e.cause = cause
	return e
}

func serverError(cause error) *oauthError {
	e := newError(oautherrors.ErrServerError, "internal error")
	e.cause = cause
	return e
}

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// StatusClientClosed is the status recorded (in the access log and the
// request metrics) for a request whose client went away before the answer
// was ready: nginx's 499 "client closed request". The client never sees
// it; what matters is that it is not counted as a 5xx, so a Redis stall
// that makes clients give up does not look like a server failure.
const StatusClientClosed = 499

// writeError writes e as JSON and records it for the request log.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		info(r.Context()).errCode = "client_closed_request"
		w.WriteHeader(StatusClientClosed)
		return
	}
	var e *oauthError
	if !errors.As(err, &e) {
		e = serverError(err)
	}
	noteError(r, e)
	h := w.Header()
	for k, v := range e.header {
		h[k] = v
	}
	setNoStoreJSON(h)
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: e.code.Error(), Description: e.desc})
}

// errNotFound is the error code of a 404: not an RFC 6749 code (none
// fits), the name tokend gives "no such resource" in every JSON 404.
var errNotFound = errors.New("not_found")

// writeNotFound answers 404 in JSON: a path tokend does not serve, or a
// feature that is off (sign-up, the revocation feed), which looks the same.
func writeNotFound(w http.ResponseWriter, r *http.Request) {
	e := newError(errNotFound, "no such endpoint")
	e.status = http.StatusNotFound
	writeError(w, r, e)
}

// writeJSON writes a JSON answer with the given status that must not be
// cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	setNoStoreJSON(w.Header())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
