// Package fromscs is a small shop moved from alexedwards/scs to roam using
// docs/embedding.md's "Migrating from scs" alone. The scs original is
// scsapp_test.go; port_test.go drives both with the same requests and
// checks that they answer alike; bridge.go keeps users logged in across
// the switch.
package fromscs

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/roamsession/roam/session"
)

// Prefs is a struct-valued session attribute. JSON stores its exported
// fields; scs's gob.Register is gone.
type Prefs struct {
	Theme string
	Lang  string
}

// Options are the scs settings carried over one by one (sm.Lifetime,
// sm.IdleTimeout, sm.Cookie.*), including scs's defaults that roam does
// not share: Persist was true. Secure stays roam's default; the tests,
// which serve plain http, set Cookie.Insecure as scs's Secure = false did.
func Options() session.Options {
	return session.Options{
		Lifetime:    8 * time.Hour,
		IdleTimeout: 20 * time.Minute,
		Cookie: session.CookieOptions{
			Name:     "shop_session",
			SameSite: http.SameSiteStrictMode,
			Persist:  true,
		},
	}
}

type shop struct{}

// New returns the shop with sessions: sm.LoadAndSave(mux) became
// sessions.Middleware(mux).
func New(sessions *session.Manager) http.Handler {
	return sessions.Middleware(Routes())
}

// Routes is the shop's mux, without sessions.
func Routes() *http.ServeMux {
	var a shop
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", a.login)
	mux.HandleFunc("GET /", a.home)
	mux.HandleFunc("POST /cart", a.addToCart)
	mux.HandleFunc("GET /cart", a.cart)
	mux.HandleFunc("POST /cart/clear", a.clearCart)
	mux.HandleFunc("POST /prefs", a.setPrefs)
	mux.HandleFunc("GET /prefs", a.prefs)
	mux.HandleFunc("POST /logout", a.logout)
	return mux
}

func (shop) login(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("username")
	if user == "" || r.PostFormValue("password") != "secret" {
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
		return
	}
	s := session.FromContext(r.Context())
	if err := s.Renew(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := s.SetPrincipal(user); err != nil { // new: enables DestroyPrincipal
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := s.Put("user", user); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := s.Put("flash", "Welcome back, "+user+"!"); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (shop) home(w http.ResponseWriter, r *http.Request) {
	s := session.FromContext(r.Context())
	visits := s.GetInt("visits") + 1
	if err := s.Put("visits", visits); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	flash := s.PopString("flash")
	user := s.GetString("user")
	if user == "" {
		user = "guest"
	}
	fmt.Fprintf(w, "hello %s, visit %d, flash %q\n", user, visits, flash)
}

func (shop) addToCart(w http.ResponseWriter, r *http.Request) {
	s := session.FromContext(r.Context())
	if !s.Has("user") {
		http.Error(w, "log in first", http.StatusUnauthorized)
		return
	}
	cart, _ := session.Get[[]string](s, "cart")
	cart = append(cart, r.PostFormValue("item"))
	if err := s.Put("cart", cart); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "%d items\n", len(cart))
}

func (shop) cart(w http.ResponseWriter, r *http.Request) {
	cart, _ := session.Get[[]string](session.FromContext(r.Context()), "cart")
	fmt.Fprintf(w, "cart: %s\n", strings.Join(cart, ", "))
}

func (shop) clearCart(w http.ResponseWriter, r *http.Request) {
	session.FromContext(r.Context()).Delete("cart")
	fmt.Fprintln(w, "cart cleared")
}

func (shop) setPrefs(w http.ResponseWriter, r *http.Request) {
	p := Prefs{Theme: r.PostFormValue("theme"), Lang: r.PostFormValue("lang")}
	if err := session.FromContext(r.Context()).Put("prefs", p); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "saved")
}

func (shop) prefs(w http.ResponseWriter, r *http.Request) {
	p, err := session.Get[Prefs](session.FromContext(r.Context()), "prefs")
	if err != nil {
		p = Prefs{Theme: "light", Lang: "en"}
	}
	fmt.Fprintf(w, "theme %s, lang %s\n", p.Theme, p.Lang)
}

func (shop) logout(w http.ResponseWriter, r *http.Request) {
	if err := session.FromContext(r.Context()).Destroy(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
