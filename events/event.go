// Package events is tokend's revocation feed (docs/design.md, "Revocation
// events"): every end of a session, every user-wide end (log out
// everywhere, disable, delete, password change) and every client deletion
// or update becomes an Event
// in one ordered Log that every replica reads — a Redis Stream with the
// Redis store, an in-process log with the embedded one. A Hub per replica
// follows the Log and fans it out to the GET /events subscribers of that
// replica and to its own caches; Wrap is the store.Store decorator that
// writes the events, so the server and the CLI emit them alike.
//
// An event says what a resource server needs to refuse the access tokens
// the end covers (a session id, or a user or client and a not-before time)
// and until when that matters (Until: the latest expiry of those tokens).
// After Until it can be forgotten, which is why the Log is kept for the
// access-token lifetime only.
package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kind says what an Event ends.
type Kind string

// Kinds of events.
const (
	// KindSession: one session ended; refuse access tokens whose sid is
	// Session.
	KindSession Kind = "session"
	// KindUser: every session of the user Subject created at or before
	// NotBefore ended, except Except (log out others). Access tokens carry
	// iat in whole seconds, so a verifier refuses the user's tokens issued
	// in a second before NotBefore's (sid not Except), and the tokens of
	// Sessions — the sessions that were active when it happened — whatever
	// their iat. A token of a session started after NotBefore in the same
	// second is thus not refused (docs/design.md, "Revocation events").
	KindUser Kind = "user"
	// KindClient: the client Client was deleted; refuse its access tokens
	// issued before NotBefore, and drop it from client caches.
	KindClient Kind = "client"
	// KindClientUpdated: the client Client's record changed (secret
	// rotated, grants or scopes replaced): drop it from client caches, and
	// end the GET /events streams the client reads with credentials that
	// no longer hold. NotBefore, if set, is the client's TokensNotBefore
	// (store.Client): refuse the access tokens the client got with
	// client_credentials (no sid) issued at or before it. The tokens of
	// users' sessions through the client stay valid.
	KindClientUpdated Kind = "client_updated"
)

// Reasons of the client events (the others carry package store's session
// end reasons).
const (
	ReasonClientDeleted = "client_deleted"
	ReasonClientUpdated = "client_updated"
)

// Event is one entry of the Log.
type Event struct {
	ID        ID        // assigned by the Log
	Kind      Kind      // what ended
	Subject   string    // the user id (KindSession, KindUser)
	Session   string    // the session id (KindSession)
	Client    string    // the client id (KindClient, KindClientUpdated; the session's client when known)
	NotBefore time.Time // KindUser, KindClient, KindClientUpdated: tokens issued before it are refused (see each kind)
	Except    string    // KindUser: the one session not ended ("log out others")
	Sessions  []string  // KindUser: the sessions it ended that were active (as far as known)
	Reason    string    // store.Reason*, ReasonClientDeleted or ReasonClientUpdated
	Time      time.Time // when it happened
	Until     time.Time // when it stops mattering: the latest expiry of the tokens it covers
}

// Valid reports whether e carries what its kind needs.
func (e Event) Valid() error {
	switch e.Kind {
	case KindSession:
		if e.Session == "" {
			return errors.New("events: a session event needs a session id")
		}
	case KindUser:
		if e.Subject == "" || e.NotBefore.IsZero() {
			return errors.New("events: a user event needs a subject and a not-before time")
		}
	case KindClient:
		if e.Client == "" || e.NotBefore.IsZero() {
			return errors.New("events: a client event needs a client id and a not-before time")
		}
	case KindClientUpdated:
		if e.Client == "" {
			return errors.New("events: a client-updated event needs a client id")
		}
	default:
		return fmt.Errorf("events: unknown kind %q", e.Kind)
	}
	if e.Until.IsZero() {
		return errors.New("events: an event needs Until")
	}
	return nil
}

// record is an Event as the Log stores it (the ID is the Log's).
type record struct {
	Kind      Kind     `json:"k"`
	Subject   string   `json:"sub,omitempty"`
	Session   string   `json:"sid,omitempty"`
	Client    string   `json:"cid,omitempty"`
	NotBefore int64    `json:"nb,omitempty"` // Unix ms
	Except    string   `json:"x,omitempty"`
	Sessions  []string `json:"ss,omitempty"`
	Reason    string   `json:"r,omitempty"`
	Time      int64    `json:"t"` // Unix ms
	Until     int64    `json:"u"` // Unix ms
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// encode is the stored form of e (without its ID).
func encode(e Event) ([]byte, error) {
	return json.Marshal(record{
		Kind: e.Kind, Subject: e.Subject, Session: e.Session, Client: e.Client,
		NotBefore: ms(e.NotBefore), Except: e.Except, Sessions: e.Sessions, Reason: e.Reason, Time: ms(e.Time), Until: ms(e.Until),
	})
}

// decode parses a stored event.
func decode(id ID, b []byte) (Event, error) {
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return Event{}, fmt.Errorf("events: entry %s: %w", id, err)
	}
	return Event{
		ID: id, Kind: r.Kind, Subject: r.Subject, Session: r.Session, Client: r.Client,
		NotBefore: fromMS(r.NotBefore), Except: r.Except, Sessions: r.Sessions, Reason: r.Reason, Time: fromMS(r.Time), Until: fromMS(r.Until),
	}, nil
}

// ID identifies an event and orders the Log. It is a Redis Stream entry id
// "<ms>-<seq>" whose second part is not a per-millisecond counter but the
// event's number in the whole log (1, 2, 3, …): a consumer that resumes
// after event n and is next handed event m knows it missed m−n−1 events
// (see Gap). IDs increase in both parts.
type ID struct {
	MS  int64  // Unix milliseconds of the Log's clock when appended
	Seq uint64 // position in the log, from 1
}

// IsZero reports whether id is the zero ID ("before everything").
func (id ID) IsZero() bool { return id.MS == 0 && id.Seq == 0 }

func (id ID) String() string {
	return strconv.FormatInt(id.MS, 10) + "-" + strconv.FormatUint(id.Seq, 10)
}

// Less orders IDs as the Log does.
func (id ID) Less(o ID) bool {
	if id.MS != o.MS {
		return id.MS < o.MS
	}
	return id.Seq < o.Seq
}

// ParseID parses "<ms>-<seq>" ("" is the zero ID).
func ParseID(s string) (ID, error) {
	if s == "" {
		return ID{}, nil
	}
	a, b, ok := strings.Cut(s, "-")
	if !ok || len(s) > 41 {
		return ID{}, fmt.Errorf("events: malformed event id %q", s)
	}
	m, err1 := strconv.ParseInt(a, 10, 64)
	n, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || m < 0 {
		return ID{}, fmt.Errorf("events: malformed event id %q", s)
	}
	return ID{MS: m, Seq: n}, nil
}
