package demoapp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

func TestLoginCounterLogoutStory(t *testing.T) {
	store := newStore(t)
	c := newClient(t, serve(t, newApp(t, "n1", store)))

	resp, body := c.do("GET", "/", "", "")
	wantStatus(t, "GET / anonymous", resp, body, http.StatusOK)
	if !strings.Contains(body, `action="/login"`) {
		t.Fatalf("GET / anonymous: no login form in %.300s", body)
	}
	resp, body = c.do("GET", "/api/me", "", "")
	wantStatus(t, "GET /api/me anonymous", resp, body, http.StatusUnauthorized)

	resp, body = c.login("alice", "roam")
	wantStatus(t, "login", resp, body, http.StatusSeeOther)
	if loc := resp.Header.Get("Location"); loc != "/" {
		t.Fatalf("login: Location %q, want /", loc)
	}
	var sc *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == session.DefaultCookieName {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Secure {
		t.Fatalf("login: session cookie %+v, want HttpOnly, SameSite=Lax, not Secure (Insecure set)", sc)
	}

	resp, body = c.do("GET", "/api/me", "", "")
	wantStatus(t, "GET /api/me", resp, body, http.StatusOK)
	if want := `{"node":"n1","user":"alice","counter":0}` + "\n"; body != want {
		t.Fatalf("GET /api/me = %q, want %q", body, want)
	}
	for i := 1; i <= 3; i++ {
		resp, body = c.do("POST", "/api/counter", "", "")
		wantStatus(t, "POST /api/counter", resp, body, http.StatusOK)
		if m := decodeJSON(t, "POST /api/counter", body); m["counter"] != float64(i) || m["node"] != "n1" {
			t.Fatalf("POST /api/counter #%d = %s, want counter %d on n1", i, body, i)
		}
	}
	resp, body = c.do("POST", "/counter", "application/x-www-form-urlencoded", "")
	wantStatus(t, "POST /counter (form)", resp, body, http.StatusSeeOther)
	resp, body = c.do("GET", "/", "", "")
	wantStatus(t, "GET / profile", resp, body, http.StatusOK)
	for _, want := range []string{"Hello, alice", `<dd class="counter">4</dd>`, `action="/logout"`} {
		if !strings.Contains(body, want) {
			t.Fatalf("GET / profile: missing %q in %.1000s", want, body)
		}
	}

	id := c.sessionCookie()
	resp, body = c.do("POST", "/logout", "application/x-www-form-urlencoded", "")
	wantStatus(t, "logout", resp, body, http.StatusSeeOther)
	if c.sessionCookie() != "" {
		t.Fatalf("logout: the jar still holds a session cookie; want it cleared")
	}
	if _, err := store.Load(context.Background(), id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("after logout, store.Load(old id) = %v, want ErrNotFound", err)
	}
	resp, body = c.do("GET", "/api/me", "", "")
	wantStatus(t, "GET /api/me after logout", resp, body, http.StatusUnauthorized)
	if m := decodeJSON(t, "401", body); m["error"] == "" || m["error"] == nil {
		t.Fatalf("401 body %q has no error message", body)
	}

	// Replaying the old cookie does not bring the session back.
	c.setSessionCookie(id)
	resp, body = c.do("GET", "/api/me", "", "")
	wantStatus(t, "GET /api/me with the logged-out cookie", resp, body, http.StatusUnauthorized)
	resp, body = c.do("POST", "/api/counter", "", "")
	wantStatus(t, "POST /api/counter with the logged-out cookie", resp, body, http.StatusUnauthorized)
}

func TestLoginRenewsSessionID(t *testing.T) {
	store := newStore(t)
	c := newClient(t, serve(t, newApp(t, "n1", store)))

	// A fixation attempt: the attacker plants an id of the right shape.
	planted := session.NewID()
	c.setSessionCookie(planted)
	resp, body := c.login("alice", "roam")
	wantStatus(t, "login with planted cookie", resp, body, http.StatusSeeOther)
	first := c.sessionCookie()
	if first == "" || first == planted {
		t.Fatalf("login kept the planted id (cookie %q); want a fresh one", first)
	}

	c.do("POST", "/api/counter", "", "")
	resp, body = c.login("alice", "roam")
	wantStatus(t, "second login", resp, body, http.StatusSeeOther)
	second := c.sessionCookie()
	if second == "" || second == first {
		t.Fatalf("second login: cookie %q, want a new id different from %q", second, first)
	}
	if _, err := store.Load(context.Background(), first); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("the id from before the login is still a session: Load = %v, want ErrNotFound", err)
	}
	resp, body = c.do("GET", "/api/me", "", "")
	if m := decodeJSON(t, "GET /api/me", body); resp.StatusCode != 200 || m["counter"] != float64(0) {
		t.Fatalf("after re-login GET /api/me = %d %s, want 200 with counter 0 (a login starts afresh)", resp.StatusCode, body)
	}

	c.setSessionCookie(first)
	resp, body = c.do("GET", "/api/me", "", "")
	wantStatus(t, "GET /api/me with the pre-login id", resp, body, http.StatusUnauthorized)
}

func TestForeignCookiesAreLoggedOut(t *testing.T) {
	store := newStore(t)
	srv := serve(t, newApp(t, "n1", store))
	owner := newClient(t, srv)
	owner.login("alice", "roam")
	real := owner.sessionCookie()

	flipped := []byte(real)
	if flipped[5] == 'A' {
		flipped[5] = 'B'
	} else {
		flipped[5] = 'A'
	}
	for name, v := range map[string]string{
		"random well-formed id": session.NewID(),
		"one character changed": string(flipped),
		"truncated":             real[:len(real)-1],
		"extended":              real + "A",
		"garbage":               "not-a-session",
		"oversized":             strings.Repeat("A", 4000),
	} {
		t.Run(name, func(t *testing.T) {
			c := newClient(t, srv)
			c.setSessionCookie(v)
			resp, body := c.do("GET", "/api/me", "", "")
			wantStatus(t, "GET /api/me", resp, body, http.StatusUnauthorized)
			resp, body = c.do("POST", "/api/counter", "", "")
			wantStatus(t, "POST /api/counter", resp, body, http.StatusUnauthorized)
			resp, body = c.do("GET", "/", "", "")
			if resp.StatusCode != 200 || !strings.Contains(body, `action="/login"`) {
				t.Fatalf("GET / = %d, want the login form", resp.StatusCode)
			}
		})
	}
	// The owner is unaffected.
	resp, body := owner.do("GET", "/api/me", "", "")
	wantStatus(t, "owner GET /api/me", resp, body, http.StatusOK)
}

func TestLoginRejectsBadRequests(t *testing.T) {
	const form, js = "application/x-www-form-urlencoded", "application/json"
	enc := func(u, p string) string { return url.Values{"username": {u}, "password": {p}}.Encode() }
	tests := []struct {
		name, contentType, body string
		code                    int
	}{
		{"wrong password", form, enc("alice", "guess"), http.StatusUnauthorized},
		{"empty password", form, enc("alice", ""), http.StatusUnauthorized},
		{"password prefix", form, enc("alice", "roa"), http.StatusUnauthorized},
		{"empty username", form, enc("", "roam"), http.StatusBadRequest},
		{"username too long", form, enc(strings.Repeat("a", 65), "roam"), http.StatusBadRequest},
		{"username with space", form, enc("al ice", "roam"), http.StatusBadRequest},
		{"username with markup", form, enc("<b>alice</b>", "roam"), http.StatusBadRequest},
		{"username with non-ASCII", form, enc("älice", "roam"), http.StatusBadRequest},
		{"username with NUL", form, enc("alice\x00", "roam"), http.StatusBadRequest},
		{"username given twice", form, "username=alice&username=bob&password=roam", http.StatusBadRequest},
		{"bad escape", form, "username=%zz&password=roam", http.StatusBadRequest},
		{"no content type", "", enc("alice", "roam"), http.StatusUnsupportedMediaType},
		{"text/plain", "text/plain", enc("alice", "roam"), http.StatusUnsupportedMediaType},
		{"multipart", "multipart/form-data; boundary=x", "--x--", http.StatusUnsupportedMediaType},
		{"too large", form, enc("alice", "roam") + "&pad=" + strings.Repeat("x", maxLoginBody), http.StatusRequestEntityTooLarge},
		{"JSON wrong password", js, `{"username":"alice","password":"nope"}`, http.StatusUnauthorized},
		{"JSON not an object", js, `["alice","roam"]`, http.StatusBadRequest},
		{"JSON number as username", js, `{"username":7,"password":"roam"}`, http.StatusBadRequest},
		{"JSON trailing data", js, `{"username":"alice","password":"roam"} {}`, http.StatusBadRequest},
		{"JSON truncated", js, `{"username":"alice"`, http.StatusBadRequest},
	}
	store := newStore(t)
	srv := serve(t, newApp(t, "n1", store))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, srv)
			before := store.writes()
			resp, body := c.do("POST", "/login", tt.contentType, tt.body)
			wantStatus(t, "POST /login", resp, body, tt.code)
			if sc := resp.Header.Get("Set-Cookie"); sc != "" {
				t.Fatalf("a refused login set a cookie: %s", sc)
			}
			if w := store.writes() - before; w != 0 {
				t.Fatalf("a refused login wrote to the store %d times", w)
			}
			if tt.contentType == js {
				if m := decodeJSON(t, "JSON error", body); m["error"] == nil {
					t.Fatalf("JSON error body %q has no \"error\"", body)
				}
			} else if !strings.Contains(body, `class="error"`) {
				t.Fatalf("HTML error page shows no error: %.500s", body)
			}
			resp, body = c.do("GET", "/api/me", "", "")
			wantStatus(t, "GET /api/me after a refused login", resp, body, http.StatusUnauthorized)
		})
	}
}

func TestLoginAnswersJSON(t *testing.T) {
	srv := serve(t, newApp(t, "n7", newStore(t)))
	for name, req := range map[string]struct{ contentType, body, accept string }{
		"JSON body":            {"application/json; charset=utf-8", `{"username":"bob","password":"roam"}`, ""},
		"form, Accept JSON":    {"application/x-www-form-urlencoded", "username=bob&password=roam", "application/json"},
		"JSON body and Accept": {"application/json", `{"username":"bob","password":"roam","extra":1}`, "text/html;q=0.5, application/json"},
	} {
		t.Run(name, func(t *testing.T) {
			c := newClient(t, srv)
			resp, body := c.do("POST", "/login", req.contentType, req.body, "Accept", req.accept)
			wantStatus(t, "POST /login", resp, body, http.StatusOK)
			if want := `{"node":"n7","user":"bob"}` + "\n"; body != want {
				t.Fatalf("POST /login = %q, want %q", body, want)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q, want application/json", ct)
			}
			if c.sessionCookie() == "" {
				t.Fatal("JSON login set no session cookie")
			}
			resp, body = c.do("POST", "/logout", "", "", "Accept", "application/json")
			wantStatus(t, "POST /logout (JSON)", resp, body, http.StatusOK)
			if want := `{"node":"n7"}` + "\n"; body != want {
				t.Fatalf("POST /logout = %q, want %q", body, want)
			}
		})
	}
}

func TestReadOnlyRequestsDoNotWrite(t *testing.T) {
	store := newStore(t)
	c := newClient(t, serve(t, newApp(t, "n1", store)))
	c.login("alice", "roam")
	c.do("POST", "/api/counter", "", "")

	loads, writes := store.loads.Load(), store.writes()
	for range 5 {
		resp, body := c.do("GET", "/api/me", "", "")
		wantStatus(t, "GET /api/me", resp, body, http.StatusOK)
		resp, body = c.do("GET", "/", "", "")
		wantStatus(t, "GET /", resp, body, http.StatusOK)
	}
	if got := store.loads.Load() - loads; got != 10 {
		t.Fatalf("10 reads loaded the session %d times, want 10 (one per request)", got)
	}
	if got := store.writes() - writes; got != 0 {
		t.Fatalf("10 read-only requests wrote to the store %d times, want 0", got)
	}
	// Requests that do not touch the session do no store I/O at all.
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/static/style.css"} {
		c.do("GET", p, "", "")
	}
	if got := store.loads.Load() - loads; got != 10 {
		t.Fatalf("health, metrics and static requests loaded sessions (%d loads, want 10)", got)
	}
}

// Two nodes on one shared store stand for any shared-store strategy: the
// second node recognises the session and says where it came from.
func TestSessionMovedBetweenNodesIsShown(t *testing.T) {
	store := newStore(t)
	n1, n2 := newApp(t, "n1", store), newApp(t, "n2", store)

	rec := httptest.NewRecorder()
	login := httptest.NewRequest("POST", "/login", strings.NewReader("username=alice&password=roam"))
	login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	n1.ServeHTTP(rec, login)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("login at n1: %d", rec.Code)
	}
	cookie := rec.Result().Cookies()[0]

	get := func(app *App) (int64, string) {
		before := store.writes()
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(cookie)
		app.ServeHTTP(rec, req)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "Hello, alice") {
			t.Fatalf("GET / at %s: %d, want alice's profile", app.NodeID(), rec.Code)
		}
		return store.writes() - before, rec.Body.String()
	}

	writes, page := get(n2)
	if !strings.Contains(page, `class="moved"`) || !strings.Contains(page, "<strong>n1</strong>") {
		t.Fatalf("GET / at n2 after login at n1: no moved-session notice naming n1 in %.1500s", page)
	}
	if writes != 1 {
		t.Fatalf("first page at n2 wrote %d times, want 1 (the serving node changed)", writes)
	}
	writes, page = get(n2)
	if strings.Contains(page, `class="moved"`) {
		t.Fatalf("second page at n2 still shows the moved notice")
	}
	if writes != 0 {
		t.Fatalf("second page at n2 wrote %d times, want 0 (nothing changed)", writes)
	}
	_, page = get(n1)
	if !strings.Contains(page, `class="moved"`) || !strings.Contains(page, "<strong>n2</strong>") {
		t.Fatalf("GET / back at n1: no notice naming n2")
	}
}

func TestCrossSitePostsAreRejected(t *testing.T) {
	store := newStore(t)
	srv := serve(t, newApp(t, "n1", store))
	victim := newClient(t, srv)
	victim.login("alice", "roam")

	hostile := [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
		{"Origin", "http://evil.example"},
	}
	for _, h := range hostile {
		for _, path := range []string{"/login", "/logout", "/counter", "/api/counter"} {
			before := store.writes()
			resp, body := victim.do("POST", path, "application/x-www-form-urlencoded", "username=mallory&password=roam", h...)
			wantStatus(t, "POST "+path+" with "+h[0]+": "+h[1], resp, body, http.StatusForbidden)
			if w := store.writes() - before; w != 0 {
				t.Fatalf("rejected POST %s wrote to the store %d times", path, w)
			}
		}
	}
	resp, body := victim.do("GET", "/api/me", "", "")
	if m := decodeJSON(t, "GET /api/me", body); resp.StatusCode != 200 || m["user"] != "alice" || m["counter"] != float64(0) {
		t.Fatalf("after the cross-site attempts GET /api/me = %d %s, want alice with counter 0", resp.StatusCode, body)
	}

	// The same requests from the app's own pages go through.
	u, _ := url.Parse(srv.URL)
	resp, body = victim.do("POST", "/counter", "application/x-www-form-urlencoded", "",
		"Sec-Fetch-Site", "same-origin", "Origin", srv.URL)
	wantStatus(t, "same-origin POST /counter", resp, body, http.StatusSeeOther)
	resp, body = victim.do("POST", "/api/counter", "application/json", "{}", "Origin", "http://"+u.Host)
	wantStatus(t, "same-origin POST /api/counter", resp, body, http.StatusOK)

	// A form-encoded body cannot reach the JSON API even without browser headers.
	resp, body = victim.do("POST", "/api/counter", "application/x-www-form-urlencoded", "x=1")
	wantStatus(t, "form POST /api/counter", resp, body, http.StatusUnsupportedMediaType)
	resp, body = victim.do("POST", "/api/counter", "text/plain", "x")
	wantStatus(t, "text/plain POST /api/counter", resp, body, http.StatusUnsupportedMediaType)
}

func TestEveryResponseNamesTheNode(t *testing.T) {
	c := newClient(t, serve(t, newApp(t, "node-3", newStore(t))))
	for _, r := range []struct{ method, path string }{
		{"GET", "/"}, {"GET", "/api/me"}, {"POST", "/api/counter"}, {"POST", "/login"}, {"POST", "/logout"},
		{"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/metrics"}, {"GET", "/static/style.css"},
		{"GET", "/static/"}, {"GET", "/nope"}, {"DELETE", "/api/me"}, {"GET", "/login"},
	} {
		resp, _ := c.do(r.method, r.path, "", "")
		if got := resp.Header.Get(NodeHeader); got != "node-3" {
			t.Errorf("%s %s (%d): %s = %q, want node-3", r.method, r.path, resp.StatusCode, NodeHeader, got)
		}
	}
}

func TestPagesCarrySecurityHeaders(t *testing.T) {
	c := newClient(t, serve(t, newApp(t, "n1", newStore(t))))
	check := func(what string, resp *http.Response) {
		t.Helper()
		for k, want := range map[string]string{
			"Content-Type":           "text/html; charset=utf-8",
			"X-Content-Type-Options": "nosniff",
			"X-Frame-Options":        "DENY",
			"Referrer-Policy":        "same-origin",
			"Cache-Control":          "no-store",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", what, k, got, want)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self'") {
			t.Errorf("%s: Content-Security-Policy %q, want default-src 'self' first", what, csp)
		}
	}
	resp, _ := c.do("GET", "/", "", "")
	check("login page", resp)
	resp, _ = c.login("alice", "wrong")
	check("login error page", resp)
	c.login("alice", "roam")
	resp, body := c.do("GET", "/", "", "")
	if !strings.Contains(body, "Hello, alice") {
		t.Fatal("not logged in")
	}
	check("profile page", resp)
	resp, _ = c.do("GET", "/api/me", "", "")
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("/api/me: Cache-Control %q, want no-store", cc)
	}
	resp, _ = c.do("GET", "/static/style.css", "", "")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/css") {
		t.Errorf("/static/style.css: %d %q, want 200 text/css", resp.StatusCode, ct)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	store := newStore(t)
	mgr, err := session.NewManager(store, session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var readyErr atomic.Pointer[error]
	var logs syncBuffer
	app, err := New(Config{NodeID: "n1", Manager: mgr,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Ready: func() error {
			if p := readyErr.Load(); p != nil {
				return *p
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, serve(t, app))
	resp, body := c.do("GET", "/healthz", "", "")
	wantStatus(t, "/healthz", resp, body, http.StatusOK)
	resp, body = c.do("GET", "/readyz", "", "")
	wantStatus(t, "/readyz while ready", resp, body, http.StatusOK)
	// The cause names a peer: it belongs in the log, not in a response
	// anyone who reaches the node can read.
	cause := errors.New("state transfer from 10.0.0.7:7947 in progress")
	readyErr.Store(&cause)
	resp, body = c.do("GET", "/readyz", "", "")
	wantStatus(t, "/readyz while not ready", resp, body, http.StatusServiceUnavailable)
	if body != "not ready\n" {
		t.Fatalf("/readyz body %q, want exactly %q", body, "not ready\n")
	}
	if strings.Contains(body, "10.0.0.7") || strings.Contains(body, "state transfer") {
		t.Fatalf("/readyz body %q leaks the cause", body)
	}
	if log := logs.String(); !strings.Contains(log, "state transfer from 10.0.0.7:7947 in progress") {
		t.Fatalf("/readyz did not log why it is not ready; log:\n%s", log)
	}
	resp, body = c.do("GET", "/healthz", "", "")
	wantStatus(t, "/healthz while not ready", resp, body, http.StatusOK)
}

func TestNewValidatesConfig(t *testing.T) {
	mgr, err := session.NewManager(newStore(t), session.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{
		"no node id":          {Manager: mgr},
		"node id with space":  {NodeID: "n 1", Manager: mgr},
		"node id too long":    {NodeID: strings.Repeat("n", 65), Manager: mgr},
		"no manager":          {NodeID: "n1"},
		"registry not gather": {NodeID: "n1", Manager: mgr, Registry: registererOnly{prometheus.NewRegistry()}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%s) succeeded, want an error", name)
		}
	}
	// A registry that already has the runtime collectors is fine; one that
	// already has the App's metrics is not.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	if _, err := New(Config{NodeID: "n1", Manager: mgr, Registry: reg}); err != nil {
		t.Fatalf("New with a registry holding the Go collector: %v", err)
	}
	if _, err := New(Config{NodeID: "n2", Manager: mgr, Registry: reg}); err == nil {
		t.Fatal("a second App on the same registry registered its metrics twice without error")
	}
}

type registererOnly struct{ prometheus.Registerer }

// A store that is down (here a closed memstore, which answers every call
// with ErrClosed) gets the Manager's 503, still naming the node, and never
// a page that pretends the user is logged out or in.
func TestStoreDownAnswers503(t *testing.T) {
	ms := memstore.New(memstore.Options{})
	app := newApp(t, "n1", ms)
	c := newClient(t, serve(t, app))
	c.login("alice", "roam")
	if err := ms.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ method, path, contentType, body string }{
		{"GET", "/", "", ""},
		{"GET", "/api/me", "", ""},
		{"POST", "/api/counter", "", ""},
		{"POST", "/logout", "", ""},
		{"POST", "/login", "application/x-www-form-urlencoded", "username=bob&password=roam"},
	} {
		resp, body := c.do(r.method, r.path, r.contentType, r.body)
		wantStatus(t, r.method+" "+r.path+" with the store down", resp, body, http.StatusServiceUnavailable)
		if n := resp.Header.Get(NodeHeader); n != "n1" {
			t.Errorf("%s %s: 503 without %s (got %q)", r.method, r.path, NodeHeader, n)
		}
	}
	resp, body := c.do("GET", "/healthz", "", "")
	wantStatus(t, "/healthz with the store down", resp, body, http.StatusOK)
	_, body = c.do("GET", "/metrics", "", "")
	if !strings.Contains(body, `roam_node_http_requests_total{code="503",route="GET /api/me"} 1`) {
		t.Errorf("/metrics does not count the 503 of GET /api/me")
	}
}
