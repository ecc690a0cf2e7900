// Package chiapp adds roam to a go-chi/chi router. chi middlewares are
// plain func(http.Handler) http.Handler, so Manager.Middleware goes into
// r.Use as it is, and handlers read the session from the request's
// context.
package chiapp

import (
	"fmt"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/roamsession/roam/session"
)

// New returns the router. The session middleware goes after Recoverer,
// so a panicking handler still gets chi's 500, and before the routes, so
// every handler below it has a session.
func New(sessions *session.Manager) http.Handler {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Use(sessions.Middleware)

	r.Post("/login", func(w http.ResponseWriter, r *http.Request) {
		user := r.PostFormValue("username")
		if user == "" || r.PostFormValue("password") != "secret" {
			http.Error(w, "wrong username or password", http.StatusUnauthorized)
			return
		}
		s := session.FromContext(r.Context())
		if err := s.Renew(); err != nil { // a new id at login
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		_ = s.SetPrincipal(user) // after a successful Renew these fail only with the same load error
		_ = s.Put("user", user)
		fmt.Fprintln(w, "welcome", user)
	})

	// Routes that need a logged-in user sit in a group behind a small
	// middleware that reads the session.
	r.Group(func(r chi.Router) {
		r.Use(requireUser)
		r.Get("/me", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "hello", session.FromContext(r.Context()).GetString("user"))
		})
		r.Post("/cart/{item}", func(w http.ResponseWriter, r *http.Request) {
			s := session.FromContext(r.Context())
			cart, _ := session.Get[[]string](s, "cart") // ErrKeyNotFound: an empty cart
			cart = append(cart, chi.URLParam(r, "item"))
			if err := s.Put("cart", cart); err != nil {
				http.Error(w, "cart is full", http.StatusRequestEntityTooLarge)
				return
			}
			fmt.Fprintln(w, "cart:", cart)
		})
		r.Post("/logout", func(w http.ResponseWriter, r *http.Request) {
			if err := session.FromContext(r.Context()).Destroy(); err != nil {
				http.Error(w, "try again", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "bye")
		})
	})
	return r
}

// requireUser answers 401 unless the session has a user.
func requireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if session.FromContext(r.Context()).GetString("user") == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
