package session_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

// A login handler renews the id (fixation defence) and records the user;
// every other handler reads the session from the request context.
func Example() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	sessions, err := session.NewManager(store, session.Options{})
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := session.FromContext(r.Context())
		// … check the password first …
		if err := s.Renew(); err != nil {
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		_ = s.SetPrincipal("alice")
		_ = s.Put("user", "alice")
		fmt.Fprintln(w, "welcome")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		user := session.FromContext(r.Context()).GetString("user")
		if user == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(w, "hello", user)
	})
	handler := sessions.Middleware(mux)

	// What a browser would do:
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, httptest.NewRequest("POST", "/login", nil))
	cookie := w.Result().Cookies()[0]

	r := httptest.NewRequest("GET", "/me", nil)
	r.AddCookie(cookie)
	w = httptest.NewRecorder()
	handler.ServeHTTP(w, r)
	fmt.Print(w.Body.String())
	// Output: hello alice
}
