package session_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

// fixedID returns a well-formed session id made of b repeated: unlike
// NewID's, the fuzzer and the seed corpus can spell it.
func fixedID(b byte) string {
	return base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{b}, session.IDBytes))
}

// The two live sessions of the fuzz targets below.
var (
	aliceID = fixedID(0xa1)
	bobID   = fixedID(0xb0)
)

// twoUsers returns a store holding alice's and bob's live sessions.
func twoUsers(t *testing.T) session.Store {
	t.Helper()
	ms := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = ms.Close() })
	now := time.Now()
	for id, user := range map[string]string{aliceID: "alice", bobID: "bob"} {
		err := ms.Apply(context.Background(), id, session.Delta{
			Create: true, SetPrincipal: true, Principal: user,
			Set:     map[string][]byte{"owner": []byte(`"` + user + `"`)},
			Created: now, Touched: now, Expires: now.Add(time.Hour),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ms
}

// seen is what a handler found in its session.
type seen struct {
	principal, owner, id string
	isNew                bool
}

// serveOnce sends r through m's middleware to a handler that reads the
// session and writes to it (so a fresh session is committed and sent).
func serveOnce(t *testing.T, m *session.Manager, r *http.Request) (seen, *httptest.ResponseRecorder) {
	t.Helper()
	var got seen
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		got = seen{principal: s.Principal(), owner: s.GetString("owner"), id: s.ID(), isNew: s.IsNew()}
		_ = s.Put("visits", 1)
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return got, w
}

// checkOwnSession holds a request to the one rule that matters: it gets
// alice's session only if it presented alice's id, bob's only if it
// presented bob's, and otherwise a fresh, empty one, sent back (sent)
// under a fresh id. An existing session's id may be sent again or not.
func checkOwnSession(t *testing.T, presented string, got seen, sent string) {
	t.Helper()
	switch got.principal {
	case "alice", "bob":
		want := map[string]string{"alice": aliceID, "bob": bobID}[got.principal]
		if !strings.Contains(presented, want) || got.id != want || got.owner != got.principal || got.isNew {
			t.Fatalf("%q got %s's session (id %s, owner %q, new %v)", presented, got.principal, got.id, got.owner, got.isNew)
		}
		if sent != "" && sent != want {
			t.Fatalf("%q: %s's session answered with id %q", presented, got.principal, sent)
		}
	case "":
		if !got.isNew || got.owner != "" {
			t.Fatalf("%q got an anonymous session that is not fresh: %+v", presented, got)
		}
		if _, err := session.ParseID(sent); err != nil || sent == aliceID || sent == bobID || strings.Contains(presented, sent) {
			t.Fatalf("%q: the fresh session went out as %q, not a fresh id", presented, sent)
		}
	default:
		t.Fatalf("%q got a session of %q, whom no session belongs to", presented, got.principal)
	}
}

// FuzzCookieHeaderLiveSessions sends arbitrary Cookie headers to a server
// that holds two users' sessions: a request only ever gets the session
// whose id it presented, never the other user's, and anything else gets a
// fresh anonymous session; a cookie in the response names the session the
// handler saw.
func FuzzCookieHeaderLiveSessions(f *testing.F) {
	for _, s := range []string{
		"roam_session=" + aliceID,
		"roam_session=" + bobID + "; roam_session=" + aliceID,
		"roam_session=x; roam_session=" + bobID,
		`roam_session="` + aliceID + `"`,
		"roam_session=" + aliceID[:42] + "B",
		"ROAM_SESSION=" + aliceID,
		"xroam_session=" + aliceID,
		"a=\"b;roam_session=" + aliceID + "\"",
		"roam_session=" + aliceID + "\x00",
		"roam_session= " + bobID,
		strings.Repeat("roam_session=;", 500) + "roam_session=" + aliceID,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		m := newManager(t, twoUsers(t), session.Options{Logger: discardLogger()})
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Cookie"] = []string{header}
		got, w := serveOnce(t, m, r)
		if w.Code != http.StatusOK {
			t.Fatalf("%q: status %d", header, w.Code)
		}
		var sent string
		if c := sessionCookie(w); c != nil {
			sent = c.Value
		}
		checkOwnSession(t, header, got, sent)
	})
}

// FuzzHeaderToken is FuzzCookieHeaderLiveSessions for a Manager that
// carries the id in a request header (Options.Header): only the exact id
// selects a session, every other value a fresh one.
func FuzzHeaderToken(f *testing.F) {
	for _, s := range []string{
		aliceID, bobID, " " + aliceID, aliceID + " ", "Bearer " + aliceID,
		aliceID + "," + bobID, aliceID[:42] + "B", "", strings.Repeat("A", 4096),
	} {
		f.Add(s, "")
	}
	f.Add(bobID, aliceID) // a second value of the header
	f.Fuzz(func(t *testing.T, value, second string) {
		m := newManager(t, twoUsers(t), session.Options{Header: "X-Session", Logger: discardLogger()})
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["X-Session"] = []string{value, second}
		got, w := serveOnce(t, m, r)
		if w.Code != http.StatusOK {
			t.Fatalf("%q: status %d", value, w.Code)
		}
		checkOwnSession(t, value, got, w.Header().Get("X-Session"))
		if got.principal != "" && value != got.id {
			t.Fatalf("header %q, %q selected %s's session: only the first value, exactly, may", value, second, got.principal)
		}
	})
}
