package session_test

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/roamsession/roam/session"
)

func TestNewIDIsUniqueAndParses(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		id := session.NewID()
		if len(id) != session.IDLen || seen[id] {
			t.Fatalf("id %q: length %d (want %d) or repeated", id, len(id), session.IDLen)
		}
		seen[id] = true
		if _, err := session.ParseID(id); err != nil {
			t.Fatalf("ParseID(NewID()) = %v", err)
		}
	}
}

func TestParseIDRejectsEverythingElse(t *testing.T) {
	good := session.NewID()
	for _, s := range []string{"", "x", good[:42], good + "A", good[:42] + "=", good[:42] + "+", good[:42] + "/",
		good[:42] + " ", strings.Repeat("\x00", 43), good[:42] + "B" /* spare bits set */} {
		if s == good {
			continue
		}
		if _, err := session.ParseID(s); err == nil {
			t.Errorf("ParseID(%q) accepted a value NewID cannot produce", s)
		}
	}
}

// FuzzParseID checks that ParseID accepts exactly the canonical encodings of
// 32 bytes and never panics.
func FuzzParseID(f *testing.F) {
	f.Add(session.NewID())
	f.Add("")
	f.Add(strings.Repeat("A", 43))
	f.Add(strings.Repeat("A", 42) + "B")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := session.ParseID(s)
		if err != nil {
			return
		}
		if id != s || len(s) != session.IDLen {
			t.Fatalf("ParseID(%q) = %q", s, id)
		}
	})
}

// FuzzCookieHeader sends arbitrary Cookie headers through the middleware:
// never a panic, never a session the server did not issue.
func FuzzCookieHeader(f *testing.F) {
	f.Add("roam_session=" + session.NewID())
	f.Add("roam_session=; roam_session=x; a=b")
	f.Add(`roam_session="` + session.NewID() + `"`)
	f.Add(strings.Repeat("roam_session=a;", 100))
	f.Fuzz(func(t *testing.T, header string) {
		st := newCounting(t)
		m := newManager(t, st, session.Options{Logger: discardLogger()})
		h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := session.FromContext(r.Context())
			if s.GetString("user") != "" || !s.IsNew() {
				t.Fatalf("cookie header %q produced an existing session", header)
			}
			_ = s.Put("k", "v")
		}))
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Cookie", header)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
		c := sessionCookie(w)
		if c == nil || strings.Contains(header, c.Value) {
			t.Fatalf("cookie header %q: response cookie %v is not a fresh id", header, c)
		}
	})
}

func TestIDLenMatchesTheEncoding(t *testing.T) {
	if want := base64.RawURLEncoding.EncodedLen(session.IDBytes); session.IDLen != want {
		t.Fatalf("IDLen = %d, want %d", session.IDLen, want)
	}
}
