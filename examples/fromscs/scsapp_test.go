package fromscs_test

// The scs original of the shop in app.go, kept as it was before the port
// (github.com/alexedwards/scs/v2 v2.9.0), so port_test.go can drive both
// with the same requests.

import (
	"encoding/gob"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"
)

// Prefs is a struct-valued session attribute; gob needs it registered.
type Prefs struct {
	Theme string
	Lang  string
}

func init() { gob.Register(Prefs{}) }

type scsShop struct {
	sm *scs.SessionManager
}

func newSCSShop() (http.Handler, *scs.SessionManager) {
	sm := scs.New()
	sm.Lifetime = 8 * time.Hour
	sm.IdleTimeout = 20 * time.Minute
	sm.Cookie.Name = "shop_session"
	sm.Cookie.SameSite = http.SameSiteStrictMode
	sm.Cookie.Secure = false // the tests serve plain http
	app := &scsShop{sm: sm}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", app.login)
	mux.HandleFunc("GET /", app.home)
	mux.HandleFunc("POST /cart", app.addToCart)
	mux.HandleFunc("GET /cart", app.cart)
	mux.HandleFunc("POST /cart/clear", app.clearCart)
	mux.HandleFunc("POST /prefs", app.setPrefs)
	mux.HandleFunc("GET /prefs", app.prefs)
	mux.HandleFunc("POST /logout", app.logout)
	return sm.LoadAndSave(mux), sm
}

func (a *scsShop) login(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("username")
	if user == "" || r.PostFormValue("password") != "secret" {
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
		return
	}
	if err := a.sm.RenewToken(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	a.sm.Put(r.Context(), "user", user)
	a.sm.Put(r.Context(), "flash", "Welcome back, "+user+"!")
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (a *scsShop) home(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	visits := a.sm.GetInt(ctx, "visits") + 1
	a.sm.Put(ctx, "visits", visits)
	flash := a.sm.PopString(ctx, "flash")
	user := a.sm.GetString(ctx, "user")
	if user == "" {
		user = "guest"
	}
	fmt.Fprintf(w, "hello %s, visit %d, flash %q\n", user, visits, flash)
}

func (a *scsShop) addToCart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !a.sm.Exists(ctx, "user") {
		http.Error(w, "log in first", http.StatusUnauthorized)
		return
	}
	cart, _ := a.sm.Get(ctx, "cart").([]string)
	cart = append(cart, r.PostFormValue("item"))
	a.sm.Put(ctx, "cart", cart)
	fmt.Fprintf(w, "%d items\n", len(cart))
}

func (a *scsShop) cart(w http.ResponseWriter, r *http.Request) {
	cart, _ := a.sm.Get(r.Context(), "cart").([]string)
	fmt.Fprintf(w, "cart: %s\n", strings.Join(cart, ", "))
}

func (a *scsShop) clearCart(w http.ResponseWriter, r *http.Request) {
	a.sm.Remove(r.Context(), "cart")
	fmt.Fprintln(w, "cart cleared")
}

func (a *scsShop) setPrefs(w http.ResponseWriter, r *http.Request) {
	a.sm.Put(r.Context(), "prefs", Prefs{Theme: r.PostFormValue("theme"), Lang: r.PostFormValue("lang")})
	fmt.Fprintln(w, "saved")
}

func (a *scsShop) prefs(w http.ResponseWriter, r *http.Request) {
	p, ok := a.sm.Get(r.Context(), "prefs").(Prefs)
	if !ok {
		p = Prefs{Theme: "light", Lang: "en"}
	}
	fmt.Fprintf(w, "theme %s, lang %s\n", p.Theme, p.Lang)
}

func (a *scsShop) logout(w http.ResponseWriter, r *http.Request) {
	if err := a.sm.Destroy(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
