package server

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/tokend/tokend/credential"
	"github.com/tokend/tokend/store"
	"github.com/tokend/tokend/token"
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
// username_taken (the name, or one it looks like: store.ErrLookAlike); 404 when signup is disabled, exactly like an unknown
// path.
//
// The password is hashed before the name is claimed, so a free and a taken
// name cost the same argon2id work: the 409 is the only difference between
// them.
func (s *Server) handleSignup(w http.ResponseWriter, r *http.Request) {
	if !s.o.AllowSignup {
		writeNotFound(w, r)
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
	if problem := credential.PasswordProblem(username, password); problem != "" {
		writeError(w, r, invalidRequest(problem))
		return
	}
	if err := s.limitSignup(r, username); err != nil {
		writeError(w, r, err)
		return
	}
	hash, err := s.o.Passwords.Hash(ctx, password)
	if err != nil {
		writeError(w, r, err)
		return
	}
	now := s.o.Now()
	u := store.User{ID: token.NewID(), Username: username, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
	switch err := s.o.Store.CreateUser(ctx, u); {
	case errors.Is(err, store.ErrLookAlike):
		e := newError(errUsernameTaken, "this username looks like one that is already taken")
		e.status = http.StatusConflict
		writeError(w, r, e)
		return
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

// signupUsername returns the canonical `username` or `email` parameter
// (credential.Username: the rule `tokend users create` applies too); an
// email must also look like one (local@domain).
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
	canonical, err := credential.Username(name)
	if err != nil {
		return "", invalidRequest(err.Error())
	}
	return canonical, nil
}
