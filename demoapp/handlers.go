package demoapp

import (
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/roamsession/roam/session"
)

// A handler that finds s.Err() set returns without writing: the Manager's
// middleware then answers with its ErrorHandler (503), and the request has
// done nothing.

// home serves GET /: the profile of a logged-in user, else the login form.
func (a *App) home(w http.ResponseWriter, r *http.Request) {
	s := session.FromContext(r.Context())
	if s.Err() != nil {
		return
	}
	user := s.Principal()
	if user == "" {
		a.pages.login(w, http.StatusOK, loginView{view: a.view(), Hint: a.showHint})
		return
	}
	prev := a.followNode(r, s)
	a.pages.profile(w, profileView{
		view:     a.view(),
		User:     user,
		Counter:  s.GetInt(keyCounter),
		PrevNode: prev,
	})
}

// login serves POST /login.
func (a *App) login(w http.ResponseWriter, r *http.Request) {
	asJSON := wantsJSON(r)
	fail := func(code int, result, msg string, c credentials) {
		a.metrics.logins.WithLabelValues(result).Inc()
		if asJSON {
			writeJSON(w, code, errorBody{Error: msg})
			return
		}
		a.pages.login(w, code, loginView{view: a.view(), Hint: a.showHint, Error: msg, Username: c.Username})
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLoginBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(http.StatusRequestEntityTooLarge, "invalid", "login request too large", credentials{})
		} else {
			fail(http.StatusBadRequest, "invalid", "could not read the login request", credentials{})
		}
		return
	}
	c, err := parseLogin(r.Header.Get("Content-Type"), body)
	switch {
	case errors.Is(err, errUnsupportedMedia):
		fail(http.StatusUnsupportedMediaType, "invalid", err.Error(), credentials{})
		return
	case err != nil:
		fail(http.StatusBadRequest, "invalid", "malformed login request", credentials{})
		return
	}
	if !validName(c.Username) {
		fail(http.StatusBadRequest, "invalid", "the username must be 1–64 characters of A–Z, a–z, 0–9, _ . -", c)
		return
	}
	if !a.passwordOK(c.Password) {
		a.log.InfoContext(r.Context(), "login refused: wrong password", "user", c.Username)
		fail(http.StatusUnauthorized, "bad_password", "wrong password", c)
		return
	}

	s := session.FromContext(r.Context())
	// Renew first: the new id is what defeats session fixation, and it
	// loads the session, so a store failure stops the login here.
	if s.Renew() != nil {
		return
	}
	// A login starts the user afresh: nothing of the previous session
	// (another user's counter, say) carries over to the new id.
	for _, k := range s.Keys() {
		s.Delete(k)
	}
	if err := s.SetPrincipal(c.Username); err != nil {
		return
	}
	if err := s.Put(keyNode, a.node); err != nil {
		a.serverError(w, r, asJSON, "record serving node", err)
		return
	}
	a.metrics.logins.WithLabelValues("ok").Inc()
	a.log.InfoContext(r.Context(), "login", "user", c.Username)
	if asJSON {
		writeJSON(w, http.StatusOK, loginBody{Node: a.node, User: c.Username})
		return
	}
	seeOther(w, "/")
}

// logout serves POST /logout. Logging out without a session is not an
// error: the client ends up logged out either way.
func (a *App) logout(w http.ResponseWriter, r *http.Request) {
	s := session.FromContext(r.Context())
	user := s.Principal()
	if s.Destroy() != nil {
		return
	}
	if user != "" {
		a.log.InfoContext(r.Context(), "logout", "user", user)
	}
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, nodeBody{Node: a.node})
		return
	}
	seeOther(w, "/")
}

// counterForm serves POST /counter, the profile page's "+1" button.
func (a *App) counterForm(w http.ResponseWriter, r *http.Request) {
	s := session.FromContext(r.Context())
	if s.Err() != nil {
		return
	}
	if s.Principal() != "" {
		if _, err := a.increment(r, s); err != nil {
			a.serverError(w, r, false, "increment counter", err)
			return
		}
	}
	// Logged out (a logout in another tab): / shows the login form.
	seeOther(w, "/")
}

// me serves GET /api/me. It only reads: it never writes to the store.
func (a *App) me(w http.ResponseWriter, r *http.Request) {
	s := session.FromContext(r.Context())
	if s.Err() != nil {
		return
	}
	user := s.Principal()
	if user == "" {
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: "not logged in"})
		return
	}
	writeJSON(w, http.StatusOK, meBody{Node: a.node, User: user, Counter: s.GetInt(keyCounter)})
}

// counterAPI serves POST /api/counter.
func (a *App) counterAPI(w http.ResponseWriter, r *http.Request) {
	// A body in any other type could come from an HTML form on another
	// site; a body-less POST or a JSON one cannot be sent cross-site
	// without CORS, which this app never grants.
	if r.ContentLength != 0 && mediaType(r.Header.Get("Content-Type")) != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, errorBody{Error: "send no body, or Content-Type: application/json"})
		return
	}
	s := session.FromContext(r.Context())
	if s.Err() != nil {
		return
	}
	if s.Principal() == "" {
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: "not logged in"})
		return
	}
	n, err := a.increment(r, s)
	if err != nil {
		a.serverError(w, r, true, "increment counter", err)
		return
	}
	writeJSON(w, http.StatusOK, counterBody{Node: a.node, Counter: n})
}

// increment adds one to the session's counter and returns the new value.
// It is a read-modify-write of one attribute: two concurrent increments of
// one session can both read the same value, and one of them is lost.
func (a *App) increment(r *http.Request, s *session.Session) (int, error) {
	n := s.GetInt(keyCounter) + 1
	if err := s.Put(keyCounter, n); err != nil {
		return 0, err
	}
	a.followNode(r, s)
	return n, nil
}

// followNode records this node as the one serving the session and returns
// the node that served it before, or "" when that was this node too. It
// writes only when the node changed, so a repeated read on one node costs
// no store write.
func (a *App) followNode(r *http.Request, s *session.Session) string {
	prev := s.GetString(keyNode)
	if prev == a.node {
		return ""
	}
	if err := s.Put(keyNode, a.node); err != nil {
		// Only the "your session moved" notice depends on it.
		a.log.WarnContext(r.Context(), "record serving node", "error", err)
	}
	return prev
}

func (a *App) healthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok\n")
}

// readyz answers 503 "not ready" while Config.Ready fails. The cause goes
// to the log only: it can name peers' addresses and the store's state,
// and /readyz answers anyone who can reach the node.
func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	if a.ready != nil {
		if err := a.ready(); err != nil {
			a.log.LogAttrs(r.Context(), slog.LevelWarn, "not ready", slog.String("error", err.Error()))
			writeText(w, http.StatusServiceUnavailable, "not ready\n")
			return
		}
	}
	writeText(w, http.StatusOK, "ready\n")
}

// crossOrigin answers a POST that CrossOriginProtection rejected.
func (a *App) crossOrigin(w http.ResponseWriter, r *http.Request) {
	a.log.WarnContext(r.Context(), "cross-origin POST rejected", "path", r.URL.Path,
		"origin", r.Header.Get("Origin"), "sec_fetch_site", r.Header.Get("Sec-Fetch-Site"))
	const msg = "cross-origin request refused"
	if wantsJSON(r) {
		writeJSON(w, http.StatusForbidden, errorBody{Error: msg})
		return
	}
	a.pages.error(w, http.StatusForbidden, errorView{view: a.view(), Message: msg})
}

// serverError answers 500 for a failure the client cannot fix; the cause
// goes to the log only.
func (a *App) serverError(w http.ResponseWriter, r *http.Request, asJSON bool, what string, err error) {
	a.log.LogAttrs(r.Context(), slog.LevelError, what, slog.String("error", err.Error()))
	const msg = "internal error"
	if asJSON {
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: msg})
		return
	}
	a.pages.error(w, http.StatusInternalServerError, errorView{view: a.view(), Message: msg})
}

// wantsJSON reports whether a request gets a JSON answer: it sent JSON, or
// asked for it.
func wantsJSON(r *http.Request) bool {
	return mediaType(r.Header.Get("Content-Type")) == "application/json" || acceptsJSON(r.Header.Get("Accept"))
}

func seeOther(w http.ResponseWriter, location string) {
	h := w.Header()
	h.Set("Location", location)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusSeeOther)
}
