package server

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
)

// Self-registration password policy (NIST SP 800-63B §5.1.1.2: a length
// floor, a generous ceiling, no composition rules). Lengths count Unicode
// characters; the byte bound caps the argon2id input.
const (
	MinPasswordChars = 10
	MaxPasswordChars = 256
	MaxPasswordBytes = 1024
	maxUsernameBytes = 254 // an email address fits (RFC 5321 §4.5.3.1.3)
)

// errUsernameTaken is the error code of a 409 from POST /users.
var errUsernameTaken = errors.New("username_taken")

type signupResponse struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

// handleSignup is POST /users: self-registration, when enabled. The body
// (form or JSON) has `username` (or `email`) and `password`. Answers: 201
// {id, username}; 400 invalid_request saying what is wrong; 409
// username_taken; 404 when signup is disabled, exactly like an unknown
// path.
//
// The password is hashed before the name is claimed, so a free and a taken
// name cost the same argon2id work: the 409 is the only difference between
// them.
func (s *Server) handleSignup(w http.ResponseWriter, r *http.Request) {
	if !s.signup {
		http.NotFound(w, r)
		return
	}
	ctx := r.Context()
	p, err := readParams(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	username, err := signupUsername(p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	password, err := p.require("password")
	if err != nil {
		writeError(w, r, err)
		return
	}
	if problem := passwordProblem(username, password); problem != "" {
		writeError(w, r, invalidRequest(problem))
		return
	}
	if err := s.limitSignup(r, username); err != nil {
		writeError(w, r, err)
		return
	}
	hash, err := s.passwords.Hash(ctx, password)
	if err != nil {
		writeError(w, r, err)
		return
	}
	now := s.now()
	u := store.User{ID: token.NewID(), Username: username, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
	switch err := s.store.CreateUser(ctx, u); {
	case errors.Is(err, store.ErrConflict):
		e := newError(errUsernameTaken, "this username is already taken")
		e.status = http.StatusConflict
		writeError(w, r, e)
		return
	case err != nil:
		writeError(w, r, storeErr(ctx, err))
		return
	}
	s.audit(ctx, "user.signup", slog.String("user_id", u.ID), slog.String("ip", clientIP(r)))
	writeJSON(w, http.StatusCreated, signupResponse{ID: u.ID, Username: u.Username})
}

// signupUsername returns the `username` or `email` parameter. A username
// is printable, without spaces, at most 254 bytes (the rules of `tokend
// users create`); an email must also look like one (local@domain).
func signupUsername(p params) (string, error) {
	name, email := p["username"], p["email"]
	switch {
	case name != "" && email != "" && name != email:
		return "", invalidRequest(`send "username" or "email", not both`)
	case name == "" && email == "":
		return "", invalidRequest(`missing parameter "username" (or "email")`)
	case name == "":
		at := strings.LastIndexByte(email, '@')
		if at < 1 || at == len(email)-1 {
			return "", invalidRequest(`"email" must be an email address like name@example.com`)
		}
		name = email
	}
	if len(name) > maxUsernameBytes {
		return "", invalidRequest("username must be at most " + strconv.Itoa(maxUsernameBytes) + " bytes")
	}
	if !utf8.ValidString(name) {
		return "", invalidRequest("username must be valid UTF-8")
	}
	for _, c := range name {
		if c <= ' ' || c == 0x7f || (c >= 0x80 && c <= 0x9f) {
			return "", invalidRequest("username must not contain spaces or control characters")
		}
	}
	return name, nil
}

// passwordProblem returns what is wrong with password under the signup
// policy, or "".
func passwordProblem(username, password string) string {
	if len(password) > MaxPasswordBytes {
		return "password must be at most " + strconv.Itoa(MaxPasswordBytes) + " bytes"
	}
	if !utf8.ValidString(password) {
		return "password must be valid UTF-8"
	}
	n := utf8.RuneCountInString(password)
	if n < MinPasswordChars {
		return "password must be at least " + strconv.Itoa(MinPasswordChars) + " characters"
	}
	if n > MaxPasswordChars {
		return "password must be at most " + strconv.Itoa(MaxPasswordChars) + " characters"
	}
	if strings.EqualFold(password, username) {
		return "password must not be the same as the username"
	}
	first, _ := utf8.DecodeRuneInString(password)
	if strings.Trim(password, string(first)) == "" {
		return "password must not be one character repeated"
	}
	return ""
}
