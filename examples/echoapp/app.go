// Package echoapp adds roam to a labstack/echo/v4 application.
// echo.WrapMiddleware turns Manager.Middleware into an echo middleware
// that also hands echo the session middleware's response writer, so the
// session is saved before the first byte whichever way a handler answers
// (c.String, c.JSON, an error for echo's error handler).
package echoapp

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/roamsession/roam/session"
)

// sess returns the request's session; every method of it is safe to call.
func sess(c echo.Context) *session.Session {
	return session.FromContext(c.Request().Context())
}

// New returns the application with sessions.
func New(sessions *session.Manager) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.Use(echo.WrapMiddleware(sessions.Middleware))

	e.POST("/login", func(c echo.Context) error {
		user := c.FormValue("username")
		if user == "" || c.FormValue("password") != "secret" {
			// Counted in the session even though the handler fails: the
			// session is saved before echo's error handler writes the 401.
			s := sess(c)
			_ = s.Put("failed_logins", s.GetInt("failed_logins")+1)
			return echo.NewHTTPError(http.StatusUnauthorized, "wrong username or password")
		}
		s := sess(c)
		if err := s.Renew(); err != nil { // a new id at login
			return echo.NewHTTPError(http.StatusServiceUnavailable, "try again")
		}
		_ = s.SetPrincipal(user)
		_ = s.Put("user", user)
		return c.String(http.StatusOK, "welcome "+user)
	})

	auth := e.Group("", requireUser)
	auth.GET("/me", func(c echo.Context) error {
		s := sess(c)
		return c.JSON(http.StatusOK, map[string]any{"user": s.GetString("user"), "failed_logins": s.GetInt("failed_logins")})
	})
	auth.POST("/logout", func(c echo.Context) error {
		if err := sess(c).Destroy(); err != nil {
			return echo.NewHTTPError(http.StatusServiceUnavailable, "try again")
		}
		return c.String(http.StatusOK, "bye")
	})
	return e
}

// requireUser answers 401 unless the session has a user.
func requireUser(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if sess(c).GetString("user") == "" {
			return echo.NewHTTPError(http.StatusUnauthorized, "not logged in")
		}
		return next(c)
	}
}
