package fromscs_test

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/roamsession/roam/examples/fromscs"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

// TestBridgeKeepsSCSUsersLoggedIn logs a user in on the scs shop, then
// serves the same browser from the roam port with the bridge in front
// (sharing the scs store, as the new deployment would): the user is still
// logged in, with the cart, in a roam session, and the scs session is gone.
func TestBridgeKeepsSCSUsersLoggedIn(t *testing.T) {
	scsShop, old := newSCSShop()
	before := httptest.NewServer(scsShop)
	t.Cleanup(before.Close)

	store := memstore.New(memstore.Options{})
	t.Cleanup(func() { store.Close() })
	opts := fromscs.Options()
	opts.Cookie.Name = "roam_session" // not scs's: both cookies live side by side during the move
	opts.Cookie.Insecure = true
	sessions, err := session.NewManager(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	after := httptest.NewServer(sessions.Middleware(fromscs.Bridge(old, "user", "user", "flash", "cart", "visits", "prefs")(fromscs.Routes())))
	t.Cleanup(after.Close)

	jar, _ := cookiejar.New(nil) // cookies ignore ports: both servers get them
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(base, method, path string, form url.Values) string {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	do(before.URL, "POST", "/login", url.Values{"username": {"alice"}, "password": {"secret"}})
	do(before.URL, "POST", "/cart", url.Values{"item": {"apple"}})
	do(before.URL, "POST", "/prefs", url.Values{"theme": {"dark"}, "lang": {"fr"}})
	u, _ := url.Parse(after.URL)
	cookieOf := func(name string) string {
		for _, ck := range jar.Cookies(u) {
			if ck.Name == name {
				return ck.Value
			}
		}
		return ""
	}
	scsToken := cookieOf("shop_session")
	if scsToken == "" {
		t.Fatal("no scs cookie after logging in on the scs shop")
	}

	// The switch: the same browser now reaches the roam port.
	if got, want := do(after.URL, "GET", "/", nil), `hello alice, visit 1, flash "Welcome back, alice!"`; got != want {
		t.Fatalf("first request after the switch: %q, want %q", got, want)
	}
	if cookieOf("roam_session") == "" || cookieOf("shop_session") != "" {
		t.Fatalf("after the bridge: roam cookie %q, scs cookie %q; want a roam cookie and the scs one cleared",
			cookieOf("roam_session"), cookieOf("shop_session"))
	}
	if got := do(after.URL, "GET", "/cart", nil); got != "cart: apple" {
		t.Fatalf("GET /cart after the switch: %q, want the cart from scs", got)
	}
	if got := do(after.URL, "GET", "/prefs", nil); got != "theme dark, lang fr" {
		t.Fatalf("GET /prefs after the switch: %q, want the prefs from scs", got)
	}
	ids, err := store.FindByPrincipal(t.Context(), "alice")
	if err != nil || len(ids) != 1 {
		t.Fatalf("roam sessions of alice: %v, %v; want one (the bridge sets the principal)", ids, err)
	}

	// The scs session is destroyed: replaying its cookie finds nothing.
	replay := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: "shop_session", Value: scsToken})
	scsShop.ServeHTTP(replay, req)
	if body := replay.Body.String(); !strings.Contains(body, "hello guest") {
		t.Fatalf("the old scs cookie still opens a session: %q", body)
	}
}
