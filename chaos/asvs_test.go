package chaos

// Checks behind docs/security.md that concern a whole node (cookie
// attributes on the wire, where ids may come from, what gets logged)
// rather than one package. Each names the ASVS 4.0.3 requirement it backs.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roamsession/roam/internal/testbin"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

// TestNodeSessionCookieAttributes (V3.4.1–V3.4.3, V3.4.5): the cookie a
// node sets at login is HttpOnly, SameSite=Lax, Path=/, host-only, a
// browser-session cookie, Secure when the node is told it is behind HTTPS,
// and the response is not cacheable by shared caches.
func TestNodeSessionCookieAttributes(t *testing.T) {
	buildRoam(t)
	for _, secure := range []bool{false, true} {
		var args []string
		if secure {
			args = []string{"--cookie-secure"}
		}
		n := testbin.StartNode(t, testbin.NodeOptions{Store: "memory", Args: args})
		req, _ := http.NewRequest(http.MethodPost, n.URL+"/login", strings.NewReader(`{"username":"erin","password":"roam"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := newClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var line string
		for _, l := range resp.Header.Values("Set-Cookie") {
			if strings.HasPrefix(l, sessionCookie+"=") {
				line = l
			}
		}
		if line == "" {
			t.Fatalf("login (secure %v) set no session cookie: %v", secure, resp.Header)
		}
		attrs := map[string]bool{}
		for _, a := range strings.Split(line, ";")[1:] {
			k, _, _ := strings.Cut(strings.TrimSpace(a), "=")
			attrs[strings.ToLower(k)] = true
		}
		for _, want := range []string{"httponly", "samesite", "path"} {
			if !attrs[want] {
				t.Errorf("session cookie %q lacks %s", line, want)
			}
		}
		if !strings.Contains(line, "SameSite=Lax") || !strings.Contains(line, "Path=/") {
			t.Errorf("session cookie %q: want SameSite=Lax and Path=/", line)
		}
		if attrs["domain"] || attrs["max-age"] || attrs["expires"] {
			t.Errorf("session cookie %q: want host-only and browser-session (no Domain, Max-Age, Expires)", line)
		}
		if attrs["secure"] != secure {
			t.Errorf("session cookie %q: Secure = %v, want %v", line, attrs["secure"], secure)
		}
		if v := resp.Header.Get("Vary"); !strings.Contains(v, "Cookie") {
			t.Errorf("a response setting the session cookie has Vary %q, want Cookie", v)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-") && !strings.Contains(cc, "private") {
			t.Errorf("a response setting the session cookie has Cache-Control %q: a shared cache could keep it", cc)
		}
	}
}

// TestSessionIDIsNeverTakenFromTheURL (V3.1.1): an id in the query string
// or in another header does not select the session; only the cookie does.
func TestSessionIDIsNeverTakenFromTheURL(t *testing.T) {
	cl := sharedCluster(t)
	c := newClient()
	id := login(t, c, cl.URL(), "frank", "")
	for _, path := range []string{"/api/me?" + sessionCookie + "=" + id, "/api/me;" + sessionCookie + "=" + id, "/api/me?sid=" + id} {
		if code, body, _ := call(t, c, http.MethodGet, cl.URL(), path, "", nil); code == http.StatusOK {
			t.Errorf("GET %s without the cookie: %d %v, want no session", path, code, body)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, cl.URL()+"/api/me", nil)
	req.Header.Set("Authorization", "Bearer "+id)
	req.Header.Set("X-Session", id)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the id in Authorization and X-Session headers: %d, want 401", resp.StatusCode)
	}
	// Nothing a node answers carries the id back in its body.
	code, body, _ := call(t, c, http.MethodGet, cl.URL(), "/api/me", id, nil)
	if b, _ := json.Marshal(body); code != http.StatusOK || bytes.Contains(b, []byte(id)) {
		t.Errorf("GET /api/me with the cookie: %d %s", code, b)
	}
}

// TestHostPrefixedCookieName (V3.4.4): the library takes a __Host- cookie
// name, and with its defaults (Secure, Path=/, no Domain) the cookie meets
// the prefix's rules, so browsers accept it and no sibling subdomain can
// overwrite it.
func TestHostPrefixedCookieName(t *testing.T) {
	ms := memstore.New(memstore.Options{})
	defer ms.Close()
	m, err := session.NewManager(ms, session.Options{Cookie: session.CookieOptions{Name: "__Host-roam_session"}})
	if err != nil {
		t.Fatalf("NewManager with a __Host- name: %v", err)
	}
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = session.FromContext(r.Context()).Put("k", 1)
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "https://app.example/", nil))
	var c *http.Cookie
	for _, ck := range w.Result().Cookies() {
		if ck.Name == "__Host-roam_session" {
			c = ck
		}
	}
	if c == nil || !c.Secure || c.Path != "/" || c.Domain != "" {
		t.Fatalf("cookie %+v does not meet the __Host- rules (Secure, Path=/, no Domain)", c)
	}
}

// checkNoIDsInLogs (the "no session data in logs" threat): no node log of
// a chaos run contains any session id the users were issued.
func checkNoIDsInLogs(t *testing.T, dir string, ids []string) {
	t.Helper()
	logs, err := readLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) == 0 {
		t.Fatalf("no node logs in %s", dir)
	}
	found := 0
	for _, id := range ids {
		for name, b := range logs {
			if bytes.Contains(b, []byte(id)) {
				if found < 5 {
					t.Errorf("%s contains session id %s…", name, id[:8])
				}
				found++
			}
		}
	}
	if found > 0 {
		t.Errorf("%d session ids found in node logs", found)
	}
}

// readLogs reads every file in dir.
func readLogs(dir string) (map[string][]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = b
	}
	return out, nil
}
