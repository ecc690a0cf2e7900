package ginapp_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/roamsession/roam/examples/ginapp"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

// TestStreamSavesSessionBeforeFirstByte checks that a gin handler that
// flushes as it goes still gets its session saved with the headers: the
// value put before the first flush is in the store when the stream ends,
// and the renewed-at-login cookie keeps working.
func TestStreamSavesSessionBeforeFirstByte(t *testing.T) {
	gin.SetMode(gin.TestMode)
	store := memstore.New(memstore.Options{})
	t.Cleanup(func() { store.Close() })
	sessions, err := session.NewManager(store, session.Options{Cookie: session.CookieOptions{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ginapp.New(sessions))
	t.Cleanup(srv.Close)

	resp, err := http.PostForm(srv.URL+"/login", map[string][]string{"username": {"bob"}, "password": {"secret"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if len(cookies) != 1 || cookies[0].Name != session.DefaultCookieName {
		t.Fatalf("login set cookies %v, want one %s", cookies, session.DefaultCookieName)
	}

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ticks", nil)
	req.AddCookie(cookies[0])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || strings.Count(string(body), "tick") != 3 {
		t.Fatalf("GET /ticks: %d %q, want 200 and three ticks", resp.StatusCode, body)
	}
	rec, err := store.Load(t.Context(), cookies[0].Value)
	if err != nil {
		t.Fatalf("load the session after the stream: %v", err)
	}
	if _, ok := rec.Values["last_stream"]; !ok {
		t.Fatalf("session after the stream has keys %v, want last_stream", rec.Values)
	}
}
