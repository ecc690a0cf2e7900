package session_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roamsession/roam/session"
)

// app is a tiny handler set that exercises the Session API.
func app(t *testing.T) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /untouched", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") })
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, session.FromContext(r.Context()).GetString("user"))
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		user := r.URL.Query().Get("user")
		if err := s.Renew(); err != nil {
			t.Errorf("Renew: %v", err)
		}
		if err := s.SetPrincipal(user); err != nil {
			t.Errorf("SetPrincipal: %v", err)
		}
		if err := s.Put("user", user); err != nil {
			t.Errorf("Put: %v", err)
		}
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		for k, v := range r.URL.Query() {
			if err := s.Put(k, v[0]); err != nil {
				http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
		}
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := session.FromContext(r.Context()).Destroy(); err != nil {
			t.Errorf("Destroy: %v", err)
		}
	})
	return mux
}

func login(t *testing.T, h http.Handler, user string) string {
	t.Helper()
	w := do(h, "POST", "/login?user="+user, "")
	c := sessionCookie(w)
	if w.Code != 200 || c == nil {
		t.Fatalf("login: status %d, cookie %v; want 200 and a session cookie", w.Code, c)
	}
	return c.Value
}

func TestUntouchedRequestDoesNoStoreIO(t *testing.T) {
	st := newCounting(t)
	h := newManager(t, st, session.Options{}).Middleware(app(t))
	id := login(t, h, "alice")
	before := st.calls()
	for _, c := range []string{"", id, "garbage"} {
		w := do(h, "GET", "/untouched", c)
		if w.Code != 200 || sessionCookie(w) != nil {
			t.Fatalf("untouched request: status %d, cookie %v; want 200 and no cookie", w.Code, sessionCookie(w))
		}
	}
	if got := st.calls() - before; got != 0 {
		t.Fatalf("untouched requests made %d store calls, want 0", got)
	}
}

func TestReadDoesOneLoadAndNoWrite(t *testing.T) {
	st := newCounting(t)
	h := newManager(t, st, session.Options{}).Middleware(app(t))
	id := login(t, h, "alice")
	loads, writes := st.loads.Load(), st.applies.Load()+st.touches.Load()+st.deletes.Load()
	w := do(h, "GET", "/read", id)
	if w.Body.String() != "alice" {
		t.Fatalf("read got %q, want alice", w.Body.String())
	}
	if got := st.loads.Load() - loads; got != 1 {
		t.Errorf("read made %d loads, want exactly 1", got)
	}
	if got := st.applies.Load() + st.touches.Load() + st.deletes.Load() - writes; got != 0 {
		t.Errorf("read-only request wrote %d times, want 0", got)
	}
	if c := sessionCookie(w); c != nil {
		t.Errorf("read-only request set a cookie: %v", c)
	}
}

func TestCookieHasSecureDefaults(t *testing.T) {
	st := newCounting(t)
	h := newManager(t, st, session.Options{}).Middleware(app(t))
	w := do(h, "POST", "/login?user=alice", "")
	c := sessionCookie(w)
	if c == nil {
		t.Fatal("no session cookie")
	}
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" || c.MaxAge != 0 {
		t.Fatalf("cookie %q: want Secure, HttpOnly, SameSite=Lax, Path=/, no Domain, no Max-Age", w.Header().Get("Set-Cookie"))
	}
	if _, err := session.ParseID(c.Value); err != nil {
		t.Fatalf("issued id %q does not parse: %v", c.Value, err)
	}
	if !strings.Contains(w.Header().Get("Vary"), "Cookie") {
		t.Errorf("response setting a session cookie lacks Vary: Cookie")
	}
	// Insecure is an explicit opt-out.
	h2 := newManager(t, st, session.Options{Cookie: session.CookieOptions{Insecure: true}}).Middleware(app(t))
	if c := sessionCookie(do(h2, "POST", "/login?user=bob", "")); c == nil || c.Secure {
		t.Fatalf("Insecure cookie: got %v, want a cookie without Secure", c)
	}
}

func TestLoginRenewsIDAndOldIDIsDead(t *testing.T) {
	st := newCounting(t)
	h := newManager(t, st, session.Options{}).Middleware(app(t))
	w := do(h, "POST", "/put?cart=apples", "")
	anon := sessionCookie(w).Value
	w = do(h, "POST", "/login?user=alice", anon)
	c := sessionCookie(w)
	if c == nil || c.Value == anon {
		t.Fatalf("login kept the pre-login id (fixation): cookie %v", c)
	}
	if _, err := st.Load(context.Background(), anon); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("old id after renew: Load error %v, want ErrNotFound", err)
	}
	rec, err := st.Load(context.Background(), c.Value)
	if err != nil {
		t.Fatalf("new id: %v", err)
	}
	if string(rec.Values["cart"]) != `"apples"` || rec.Principal != "alice" {
		t.Fatalf("renewed session lost data: values %q principal %q", rec.Values, rec.Principal)
	}
	if got := do(h, "GET", "/read", anon).Body.String(); got != "" {
		t.Fatalf("old id still reads as %q", got)
	}
}

func TestUnknownOrMalformedIDIsNeverAdopted(t *testing.T) {
	st := newCounting(t)
	h := newManager(t, st, session.Options{}).Middleware(app(t))
	chosen := session.NewID() // well-formed, but never issued
	for _, c := range []string{chosen, "short", strings.Repeat("A", 42) + "B", strings.Repeat("é", 22), chosen + "=", `"` + chosen + `"` /* net/http unquotes: still never adopted */} {
		loads := st.loads.Load()
		w := do(h, "POST", "/put?k=v", c)
		got := sessionCookie(w)
		if got == nil || got.Value == c {
			t.Fatalf("cookie %q: response cookie %v, want a fresh server-issued id", c, got)
		}
		_, perr := session.ParseID(strings.Trim(c, `"`)) // net/http unquotes cookie values
		if perr != nil && st.loads.Load() != loads {
			t.Fatalf("malformed cookie %q reached the store", c)
		}
	}
}

func TestConcurrentWritersToDifferentKeysBothSurvive(t *testing.T) {
	st := newCounting(t)
	m := newManager(t, st, session.Options{})
	h := m.Middleware(app(t))
	id := login(t, h, "alice")
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if w := do(h, "POST", fmt.Sprintf("/put?k%d=v%d", i, i), id); w.Code != 200 {
				t.Errorf("put %d: status %d", i, w.Code)
			}
		}()
	}
	wg.Wait()
	rec, err := st.Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 16; i++ {
		if got := string(rec.Values[fmt.Sprintf("k%d", i)]); got != fmt.Sprintf(`"v%d"`, i) {
			t.Errorf("key k%d = %q after concurrent writes, want \"v%d\"", i, got, i)
		}
	}
}

func TestTouchIsThrottled(t *testing.T) {
	st := newCounting(t)
	clk := &clock{t: time.Now()}
	m := newManager(t, st, session.Options{IdleTimeout: 10 * time.Minute, TouchFraction: 0.1, Now: clk.Now})
	h := m.Middleware(app(t))
	id := login(t, h, "alice")
	writes := func() int64 { return st.applies.Load() + st.touches.Load() }
	base := writes()
	for i := 0; i < 5; i++ {
		clk.Add(10 * time.Second) // 50 s in all: under the 60 s throttle
		do(h, "GET", "/read", id)
	}
	if got := writes() - base; got != 0 {
		t.Fatalf("%d touches within the throttle window, want 0", got)
	}
	clk.Add(11 * time.Second)
	do(h, "GET", "/read", id)
	if got := writes() - base; got != 1 {
		t.Fatalf("%d touches after the throttle window, want 1", got)
	}
	rec, _ := st.Load(context.Background(), id)
	if want := clk.Now().Add(10 * time.Minute); !rec.Expires.Equal(want) {
		t.Fatalf("touch set Expires %v, want %v", rec.Expires, want)
	}
}

func TestIdleAndAbsoluteTimeoutsAreEnforcedAtLoad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []time.Duration // time between requests; the last one must find the session gone
	}{
		{"idle", []time.Duration{10*time.Minute + time.Second}},
		{"absolute", []time.Duration{9 * time.Minute, 9 * time.Minute, 9 * time.Minute, 9 * time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newCounting(t)
			clk := &clock{t: time.Now()}
			var expired []string
			m := newManager(t, st, session.Options{
				IdleTimeout: 10 * time.Minute, Lifetime: 30 * time.Minute, TouchFraction: 0.01, Now: clk.Now,
				Events: session.Events{Expired: func(_ context.Context, id string) { expired = append(expired, id) }},
			})
			h := m.Middleware(app(t))
			id := login(t, h, "alice")
			for i, d := range tc.steps {
				clk.Add(d)
				got := do(h, "GET", "/read", id).Body.String()
				last := i == len(tc.steps)-1
				if last && got != "" || !last && got != "alice" {
					t.Fatalf("after %v more: read %q (last step %v)", d, got, last)
				}
			}
			if len(expired) != 1 || expired[0] != id {
				t.Fatalf("Expired events %d, want 1 for the session", len(expired))
			}
		})
	}
}

func TestMaxSizeIsEnforcedAndNothingPartialIsSaved(t *testing.T) {
	st := newCounting(t)
	h := newManager(t, st, session.Options{MaxSize: 100}).Middleware(app(t))
	id := login(t, h, "alice")
	w := do(h, "POST", "/put?big="+strings.Repeat("x", 200), id)
	if w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "too large") {
		t.Fatalf("oversized put: status %d body %q, want 413 with ErrTooLarge", w.Code, w.Body.String())
	}
	rec, err := st.Load(context.Background(), id)
	if err != nil || rec.Values["big"] != nil || string(rec.Values["user"]) != `"alice"` {
		t.Fatalf("after refused put: %v, values %q", err, rec.Values)
	}
}

func TestStoreDownAnswers503AndKeepsTheCookie(t *testing.T) {
	st := newCounting(t)
	var handled error
	m := newManager(t, st, session.Options{ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
		handled = err
		http.Error(w, "try later", http.StatusServiceUnavailable)
	}})
	h := m.Middleware(app(t))
	id := login(t, h, "alice")
	st.fail.Store(true)
	w := do(h, "GET", "/read", id)
	if w.Code != http.StatusServiceUnavailable || !errors.Is(handled, errDown) {
		t.Fatalf("store down: status %d, handler error %v; want 503 and the store's error", w.Code, handled)
	}
	if c := sessionCookie(w); c != nil {
		t.Fatalf("store down: the response changed the cookie (%v); the user would be logged out", c)
	}
	if strings.Contains(w.Body.String(), "store is down") {
		t.Fatalf("the cause leaked to the client: %q", w.Body.String())
	}
	st.fail.Store(false)
	if got := do(h, "GET", "/read", id).Body.String(); got != "alice" {
		t.Fatalf("after recovery: read %q, want alice", got)
	}
	// Default handler: generic 503.
	st.fail.Store(true)
	h2 := newManager(t, st, session.Options{Logger: discardLogger()}).Middleware(app(t))
	if w := do(h2, "POST", "/put?a=b", id); w.Code != 503 || w.Body.String() != "Service Unavailable\n" {
		t.Fatalf("default ErrorHandler: %d %q", w.Code, w.Body.String())
	}
}

func TestLogoutDestroysAndARacingWriteCannotResurrect(t *testing.T) {
	st := newCounting(t)
	var destroyed int
	m := newManager(t, st, session.Options{Events: session.Events{Destroyed: func(context.Context, string) { destroyed++ }}})
	h := m.Middleware(app(t))
	id := login(t, h, "alice")

	// A request that loaded the session before the logout and saves after it.
	release := make(chan struct{})
	loaded := make(chan struct{})
	slow := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		_ = s.GetString("user")
		close(loaded)
		<-release
		_ = s.Put("late", "write")
	}))
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- do(slow, "POST", "/", id) }()
	<-loaded
	w := do(h, "POST", "/logout", id)
	if c := sessionCookie(w); c == nil || c.MaxAge >= 0 {
		t.Fatalf("logout: cookie %v, want it cleared", c)
	}
	close(release)
	<-done
	if _, err := st.Load(context.Background(), id); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("after logout and a racing write: Load error %v, want ErrNotFound", err)
	}
	if destroyed != 1 {
		t.Fatalf("Destroyed events = %d, want 1", destroyed)
	}
}

func TestSavedBeforeFirstByteWhileStreaming(t *testing.T) {
	st := newCounting(t)
	m := newManager(t, st, session.Options{Cookie: session.CookieOptions{Insecure: true}})
	id := make(chan string, 1)
	srv := httptest.NewServer(m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		_ = s.Put("k", "v")
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		// The client has the first chunk now; the store must already hold the session.
		<-r.Context().Done()
	})))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk %q, %v", line, err)
	}
	for _, c := range resp.Cookies() {
		id <- c.Value
	}
	if len(id) != 1 {
		t.Fatal("streamed response carried no session cookie")
	}
	if _, err := st.Load(ctx, <-id); err != nil {
		t.Fatalf("session not in the store when the first byte arrived: %v", err)
	}
	cancel()
	resp.Body.Close()
}

func TestHijackAndResponseControllerWork(t *testing.T) {
	st := newCounting(t)
	m := newManager(t, st, session.Options{})
	srv := httptest.NewServer(m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Errorf("ResponseController.SetWriteDeadline through the middleware: %v", err)
		}
		conn, buf, err := rc.Hijack()
		if err != nil {
			t.Errorf("Hijack through the middleware: %v", err)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nraw ok")
		buf.Flush()
	})))
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn)
	if !strings.HasSuffix(string(b), "raw ok") {
		t.Fatalf("hijacked response %q", b)
	}
}

func TestHeaderTokenMode(t *testing.T) {
	st := newCounting(t)
	h := newManager(t, st, session.Options{Header: "X-Session-Token"}).Middleware(app(t))
	w := do(h, "POST", "/login?user=api", "")
	tok := w.Header().Get("X-Session-Token")
	if _, err := session.ParseID(tok); err != nil || len(w.Result().Cookies()) != 0 {
		t.Fatalf("header mode login: token %q, cookies %v", tok, w.Result().Cookies())
	}
	r := httptest.NewRequest("GET", "/read", nil)
	r.Header.Set("X-Session-Token", tok)
	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, r)
	if rw.Body.String() != "api" {
		t.Fatalf("header mode read: %q", rw.Body.String())
	}
	// A cookie is ignored in header mode.
	if got := do(h, "GET", "/read", tok).Body.String(); got != "" {
		t.Fatalf("header mode accepted the id from a cookie: %q", got)
	}
}

func TestFlashIsReadOnce(t *testing.T) {
	st := newCounting(t)
	m := newManager(t, st, session.Options{})
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		if r.Method == "POST" {
			_ = s.Put("flash", "saved!")
			return
		}
		io.WriteString(w, s.PopString("flash"))
	}))
	id := sessionCookie(do(h, "POST", "/", "")).Value
	if got := do(h, "GET", "/", id).Body.String(); got != "saved!" {
		t.Fatalf("first read of flash: %q", got)
	}
	if got := do(h, "GET", "/", id).Body.String(); got != "" {
		t.Fatalf("second read of flash: %q, want empty", got)
	}
}

func TestGetTypedValuesAndErrors(t *testing.T) {
	st := newCounting(t)
	m := newManager(t, st, session.Options{})
	type cart struct {
		Items []string
		Total float64
	}
	var id string
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		if r.Method == "POST" {
			_ = s.Put("n", 42)
			_ = s.Put("ok", true)
			_ = s.Put("cart", cart{Items: []string{"a", "b"}, Total: 2.5})
			_ = s.Put("when", time.Unix(1_700_000_000, 0).UTC())
			return
		}
		c, err := session.Get[cart](s, "cart")
		if err != nil || len(c.Items) != 2 || c.Total != 2.5 {
			t.Errorf("Get[cart] = %+v, %v", c, err)
		}
		if s.GetInt("n") != 42 || !s.GetBool("ok") || s.GetTime("when").Unix() != 1_700_000_000 {
			t.Errorf("typed getters: %d %v %v", s.GetInt("n"), s.GetBool("ok"), s.GetTime("when"))
		}
		if _, err := session.Get[int](s, "missing"); !errors.Is(err, session.ErrKeyNotFound) {
			t.Errorf("Get of a missing key: %v, want ErrKeyNotFound", err)
		}
		if _, err := session.Get[int](s, "cart"); err == nil {
			t.Errorf("Get[int] of a struct: no error")
		}
		if got := s.Keys(); strings.Join(got, ",") != "cart,n,ok,when" {
			t.Errorf("Keys() = %v", got)
		}
	}))
	id = sessionCookie(do(h, "POST", "/", "")).Value
	do(h, "GET", "/", id)
}

func TestDestroyPrincipalEndsEverySessionOfTheUser(t *testing.T) {
	st := newCounting(t)
	m := newManager(t, st, session.Options{})
	h := m.Middleware(app(t))
	a1, a2, b := login(t, h, "alice"), login(t, h, "alice"), login(t, h, "bob")
	n, err := m.DestroyPrincipal(context.Background(), "alice")
	if err != nil || n != 2 {
		t.Fatalf("DestroyPrincipal = %d, %v; want 2", n, err)
	}
	for _, id := range []string{a1, a2} {
		if got := do(h, "GET", "/read", id).Body.String(); got != "" {
			t.Fatalf("alice's session still reads %q", got)
		}
	}
	if got := do(h, "GET", "/read", b).Body.String(); got != "bob" {
		t.Fatalf("bob's session: %q", got)
	}
}

func TestNilSessionIsSafe(t *testing.T) {
	var s *session.Session
	if s.GetString("x") != "" || s.Has("x") || s.Keys() != nil || s.ID() != "" {
		t.Fatal("nil session reads returned data")
	}
	if err := s.Put("x", 1); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("Put on nil session: %v", err)
	}
	if s := session.FromContext(context.Background()); s != nil {
		t.Fatal("FromContext of a bare context returned a session")
	}
}

func TestNewManagerRejectsBadOptions(t *testing.T) {
	st := newCounting(t)
	for _, o := range []session.Options{
		{Cookie: session.CookieOptions{Name: "bad name"}},
		{Cookie: session.CookieOptions{Insecure: true, SameSite: http.SameSiteNoneMode}},
		{TouchFraction: 2},
		{MaxSize: -1},
		{IdleTimeout: -time.Second},
		{Header: "X Bad\r\nHeader"},
		{Cookie: session.CookieOptions{Name: "__Host-sid", Insecure: true}},
		{Cookie: session.CookieOptions{Name: "__Host-sid", Domain: "example.com"}},
		{Cookie: session.CookieOptions{Name: "__Host-sid", Path: "/app"}},
		{Cookie: session.CookieOptions{Name: "__Secure-sid", Insecure: true}},
		{Header: "X-Token:"},
	} {
		if _, err := session.NewManager(st, o); err == nil {
			t.Errorf("NewManager(%+v) accepted invalid options", o)
		}
	}
	for _, o := range []session.Options{
		{Cookie: session.CookieOptions{Name: "__Host-sid"}},
		{Cookie: session.CookieOptions{Name: "__Secure-sid", Domain: "example.com", Path: "/app"}},
	} {
		if _, err := session.NewManager(st, o); err != nil {
			t.Errorf("NewManager(%+v) refused valid prefixed cookie options: %v", o, err)
		}
	}
	if _, err := session.NewManager(nil, session.Options{}); err == nil {
		t.Error("NewManager(nil store) succeeded")
	}
}

func TestCloseNotifierIsPassedThrough(t *testing.T) {
	st := newCounting(t)
	m := newManager(t, st, session.Options{})
	got := make(chan bool, 1)
	srv := httptest.NewServer(m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn, ok := w.(http.CloseNotifier)
		if !ok {
			t.Error("the middleware's writer is not an http.CloseNotifier")
			got <- false
			return
		}
		io.WriteString(w, "x")
		w.(http.Flusher).Flush()
		select {
		case v := <-cn.CloseNotify():
			got <- v
		case <-time.After(10 * time.Second):
			got <- false
		}
	})))
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1)
	for !strings.Contains(string(buf), "x") {
		if _, err := conn.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	if v := <-got; !v {
		t.Fatal("CloseNotify did not report the client going away")
	}
}

func TestRenewDoesNotResurrectAConcurrentlyDestroyedSession(t *testing.T) {
	st := newCounting(t)
	m := newManager(t, st, session.Options{})
	h := m.Middleware(app(t))
	id := login(t, h, "alice")

	// A second login that loaded the session, then a logout lands in
	// another tab, then the second login renews and commits.
	loaded, release := make(chan struct{}), make(chan struct{})
	relogin := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		_ = s.GetString("user")
		close(loaded)
		<-release
		if err := s.Renew(); err != nil {
			t.Errorf("Renew: %v", err)
		}
		_ = s.Put("theme", "dark")
	}))
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- do(relogin, "POST", "/", id) }()
	<-loaded
	do(h, "POST", "/logout", id)
	close(release)
	w := <-done
	c := sessionCookie(w)
	if c == nil || c.Value == id {
		t.Fatalf("renew after a concurrent logout: cookie %v", c)
	}
	rec, err := st.Load(context.Background(), c.Value)
	if err != nil {
		t.Fatalf("the new session holds this request's own write: %v", err)
	}
	if rec.Values["user"] != nil || rec.Principal != "" || string(rec.Values["theme"]) != `"dark"` {
		t.Fatalf("logged-out session's data came back under the new id: values %q principal %q", rec.Values, rec.Principal)
	}
}

func TestChangesAfterTheResponseStartedAreRefused(t *testing.T) {
	st := newCounting(t)
	m := newManager(t, st, session.Options{Logger: discardLogger()})
	h := m.Middleware(app(t))
	id := login(t, h, "alice")
	errs := map[string]error{}
	late := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		io.WriteString(w, "bye") // commits
		errs["Put"] = s.Put("k", "v")
		errs["SetPrincipal"] = s.SetPrincipal("bob")
		errs["Renew"] = s.Renew()
		errs["Destroy"] = s.Destroy()
		s.Delete("user")
	}))
	do(late, "POST", "/", id)
	for name, err := range errs {
		if !errors.Is(err, session.ErrCommitted) {
			t.Errorf("%s after the response started: %v, want ErrCommitted", name, err)
		}
	}
	if got := do(h, "GET", "/read", id).Body.String(); got != "alice" {
		t.Fatalf("session after refused late changes reads %q, want alice", got)
	}
}

func TestHeaderModeResponsesAreNotCacheable(t *testing.T) {
	st := newCounting(t)
	h := newManager(t, st, session.Options{Header: "X-Session-Token"}).Middleware(app(t))
	w := do(h, "POST", "/login?user=api", "")
	if w.Header().Get("Cache-Control") != "no-store" || !strings.Contains(w.Header().Get("Vary"), "X-Session-Token") {
		t.Fatalf("header-mode login: Cache-Control %q, Vary %q", w.Header().Get("Cache-Control"), w.Header().Get("Vary"))
	}
}
