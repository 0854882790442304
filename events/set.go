package events

import (
	"encoding/json"
	"strconv"
	"time"
)

// Event type URIs of the payloads (RFC 8417 "events" members).
const (
	// CAEPSessionRevoked is the OpenID CAEP session-revoked event type;
	// KindSession and KindUser events carry it.
	CAEPSessionRevoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	// ClientDeleted is tokend's own event type for KindClient.
	ClientDeleted = "urn:tokend:secevent:client-deleted"
	// ClientUpdated is tokend's own event type for KindClientUpdated.
	ClientUpdated = "urn:tokend:secevent:client-updated"
)

// SSE event names (the "event:" field) of GET /events.
const (
	SSESessionRevoked = "session-revoked"
	SSEClientDeleted  = "client-deleted"
	SSEClientUpdated  = "client-updated"
	SSEGap            = "gap"
	SSEHeartbeat      = "heartbeat"
)

// Claims is the "tokend" member of a payload: the machine-readable form a
// verifier acts on. Times are Unix seconds except NotBefore (milliseconds,
// the store's precision).
type Claims struct {
	Kind      Kind     `json:"kind"`
	Subject   string   `json:"sub,omitempty"`
	Session   string   `json:"sid,omitempty"`
	Client    string   `json:"client_id,omitempty"`
	NotBefore int64    `json:"not_before_ms,omitempty"`
	Except    string   `json:"except_sid,omitempty"`
	Sessions  []string `json:"sids,omitempty"`
	Until     int64    `json:"until"`
	Reason    string   `json:"reason,omitempty"`
}

type subject struct {
	Format  string   `json:"format"`
	ID      string   `json:"id,omitempty"`
	User    *subject `json:"user,omitempty"`
	Session *subject `json:"session,omitempty"`
}

// Payload is the JSON claims set of the Security Event Token (RFC 8417
// §2) describing e, unsigned: GET /events is served over an authenticated
// connection (docs/design.md, "Revocation events").
func Payload(e Event, issuer string) []byte {
	ts := e.Time.Unix()
	var typ string
	var sub subject
	switch e.Kind {
	case KindSession:
		typ = CAEPSessionRevoked
		sub = subject{Format: "complex", Session: &subject{Format: "opaque", ID: e.Session}}
		if e.Subject != "" {
			sub.User = &subject{Format: "opaque", ID: e.Subject}
		}
	case KindUser:
		typ = CAEPSessionRevoked
		sub = subject{Format: "complex", User: &subject{Format: "opaque", ID: e.Subject}}
	case KindClientUpdated:
		typ = ClientUpdated
		sub = subject{Format: "opaque", ID: e.Client}
	default:
		typ = ClientDeleted
		sub = subject{Format: "opaque", ID: e.Client}
	}
	body := map[string]any{"subject": sub, "event_timestamp": ts}
	if e.Reason != "" {
		body["reason_admin"] = map[string]string{"en": e.Reason}
	}
	b, _ := json.Marshal(struct {
		Iss    string         `json:"iss"`
		Jti    string         `json:"jti"`
		Iat    int64          `json:"iat"`
		Events map[string]any `json:"events"`
		Tokend Claims         `json:"tokend"`
	}{issuer, e.ID.String(), ts, map[string]any{typ: body}, Claims{
		Kind: e.Kind, Subject: e.Subject, Session: e.Session, Client: e.Client, NotBefore: ms(e.NotBefore),
		Except: e.Except, Sessions: e.Sessions, Until: ceilUnix(e.Until), Reason: e.Reason,
	}})
	return b
}

func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// Frame is the Server-Sent Events frame of e.
func Frame(e Event, issuer string) []byte {
	name := SSESessionRevoked
	switch e.Kind {
	case KindClient:
		name = SSEClientDeleted
	case KindClientUpdated:
		name = SSEClientUpdated
	}
	b := make([]byte, 0, 512)
	b = append(b, "id: "...)
	b = append(b, e.ID.String()...)
	b = append(b, "\nevent: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, Payload(e, issuer)...)
	return append(b, "\n\n"...)
}

// GapFrame tells a consumer it may have missed events that still matter;
// the feed then replays everything retained, from First.
func GapFrame(st State) []byte {
	b, _ := json.Marshal(struct {
		Reason       string `json:"reason"`
		RetainedFrom string `json:"retained_from,omitempty"`
		LastEventID  string `json:"last_event_id,omitempty"`
		Description  string `json:"description"`
	}{"history_unavailable", idOrEmpty(st.First), idOrEmpty(st.Last),
		"events after your Last-Event-ID are no longer all retained: revocations may have been missed; the feed replays all it retains"})
	return append(append([]byte("event: "+SSEGap+"\ndata: "), b...), "\n\n"...)
}

func idOrEmpty(id ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

// HeartbeatFrame says the feed is up to date as of now.
func HeartbeatFrame(now time.Time) []byte {
	return []byte("event: " + SSEHeartbeat + "\ndata: {\"time\":" + strconv.FormatInt(now.Unix(), 10) + "}\n\n")
}
