package fromscs_test

import (
	"fmt"
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

// step is one request of the script both shops answer.
type step struct {
	method, path string
	form         url.Values
}

var script = []step{
	{"GET", "/", nil},
	{"GET", "/", nil},
	{"POST", "/cart", url.Values{"item": {"apple"}}},
	{"POST", "/login", url.Values{"username": {"alice"}, "password": {"wrong"}}},
	{"POST", "/login", url.Values{"username": {"alice"}, "password": {"secret"}}},
	{"GET", "/", nil},
	{"GET", "/", nil},
	{"POST", "/cart", url.Values{"item": {"apple"}}},
	{"POST", "/cart", url.Values{"item": {"pear"}}},
	{"GET", "/cart", nil},
	{"GET", "/prefs", nil},
	{"POST", "/prefs", url.Values{"theme": {"dark"}, "lang": {"fr"}}},
	{"GET", "/prefs", nil},
	{"POST", "/cart/clear", nil},
	{"GET", "/cart", nil},
	{"POST", "/logout", nil},
	{"GET", "/", nil},
	{"POST", "/cart", url.Values{"item": {"plum"}}},
}

// run plays the script against h with a cookie-keeping client and returns
// what a user (and the user's browser) sees at each step: status,
// redirect, body, and the session cookie the response sets, if any.
func run(t *testing.T, h http.Handler) []string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var out []string
	token := "" // the session cookie's value the browser holds
	for _, st := range script {
		var body io.Reader
		if st.form != nil {
			body = strings.NewReader(st.form.Encode())
		}
		req, err := http.NewRequest(st.method, srv.URL+st.path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", st.method, st.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var ck string
		ck, token = cookieSummary(resp, token)
		out = append(out, fmt.Sprintf("%s %s -> %d location=%q body=%q cookie=%s",
			st.method, st.path, resp.StatusCode, resp.Header.Get("Location"), strings.TrimSpace(string(b)), ck))
	}
	return out
}

// cookieSummary describes the shop_session cookie a response sets, given
// the value the browser held: whether it is a new id, the same id sent
// again, or cleared; its attributes; and its lifetime to the minute (scs
// sends Expires and Max-Age, roam Max-Age; both count from the same
// deadline). It returns the value the browser holds afterwards.
func cookieSummary(resp *http.Response, held string) (string, string) {
	for _, ck := range resp.Cookies() {
		if ck.Name != "shop_session" {
			continue
		}
		id, life := "new", "browser-session"
		switch {
		case ck.MaxAge < 0:
			id, life = "cleared", "cleared"
		case ck.Value == held:
			id = "same"
		}
		if ck.MaxAge > 0 {
			life = fmt.Sprintf("%dm", (ck.MaxAge+30)/60)
		}
		if ck.MaxAge < 0 {
			held = ""
		} else {
			held = ck.Value
		}
		return fmt.Sprintf("{%s path=%s httponly=%v secure=%v samesite=%v life=%s}", id, ck.Path, ck.HttpOnly, ck.Secure, ck.SameSite, life), held
	}
	return "none", held
}

// sameOrNone is the one difference the port keeps on purpose: with an
// IdleTimeout, scs rewrites the session and re-sends the same cookie on
// every request, where roam only touches the session (and, with Persist,
// refreshes the cookie) once per TouchFraction × IdleTimeout. A step where
// scs re-sent the same id and roam sent nothing is the same to the user.
func sameOrNone(scs, roam string) bool {
	i := strings.Index(scs, "cookie={same ")
	return i >= 0 && roam == scs[:i]+"cookie=none"
}

// TestPortAnswersLikeTheSCSOriginal drives the scs shop and its roam port
// with the same requests: every status, redirect, body and session-cookie
// attribute must match, step by step.
func TestPortAnswersLikeTheSCSOriginal(t *testing.T) {
	store := memstore.New(memstore.Options{})
	t.Cleanup(func() { store.Close() })
	opts := fromscs.Options()
	opts.Cookie.Insecure = true // as the scs original's Secure = false: httptest serves plain http
	sessions, err := session.NewManager(store, opts)
	if err != nil {
		t.Fatal(err)
	}

	scsShop, _ := newSCSShop()
	want := run(t, scsShop)
	got := run(t, fromscs.New(sessions))
	for i := range want {
		if got[i] != want[i] && !sameOrNone(want[i], got[i]) {
			t.Errorf("step %d:\n scs:  %s\n roam: %s", i+1, want[i], got[i])
		}
	}
	if t.Failed() {
		return
	}
	// The script must have exercised what a port can get wrong.
	for _, w := range []string{`flash \"Welcome back, alice!\"`, "cart: apple, pear", "theme dark, lang fr", "life=20m", "life=cleared", "hello guest, visit 1"} {
		if !strings.Contains(strings.Join(want, "\n"), w) {
			t.Errorf("the script never showed %q; it tests less than it claims", w)
		}
	}
}
