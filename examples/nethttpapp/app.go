// Package nethttpapp adds roam to an existing net/http application: the
// app's handlers stay as they are, the whole mux is wrapped in
// Manager.Middleware, and handlers read the session from the request's
// context.
package nethttpapp

import (
	"fmt"
	"net/http"

	"github.com/roamsession/roam/session"
)

// Routes is the application: three handlers on a ServeMux.
func Routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", login)
	mux.HandleFunc("GET /me", me)
	mux.HandleFunc("POST /logout", logout)
	return mux
}

// New returns the application with sessions: the mux wrapped in the
// manager's middleware. A route that never touches its session (static
// files, health checks) costs no store round trip, so wrapping everything
// is the simple and cheap choice.
func New(sessions *session.Manager) http.Handler {
	return sessions.Middleware(Routes())
}

func login(w http.ResponseWriter, r *http.Request) {
	user := r.PostFormValue("username")
	if user == "" || r.PostFormValue("password") != "secret" {
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
		return
	}
	s := session.FromContext(r.Context())
	// A new id at login: the defence against session fixation.
	if err := s.Renew(); err != nil {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	if err := s.SetPrincipal(user); err != nil {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	if err := s.Put("user", user); err != nil {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "welcome", user)
}

func me(w http.ResponseWriter, r *http.Request) {
	user := session.FromContext(r.Context()).GetString("user")
	if user == "" {
		http.Error(w, "not logged in", http.StatusUnauthorized)
		return
	}
	fmt.Fprintln(w, "hello", user)
}

func logout(w http.ResponseWriter, r *http.Request) {
	if err := session.FromContext(r.Context()).Destroy(); err != nil {
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "bye")
}
