// Package ginapp adds roam to a gin-gonic/gin application.
//
// gin's own middlewares cannot swap gin's response writer for the session
// middleware's, and roam must see the first byte of the response to save
// the session before the headers go out. So the session middleware goes
// around the whole engine (gin.Engine is an http.Handler), and handlers
// read the session from c.Request.Context(). Routes that never touch the
// session cost nothing: the session loads on first use.
package ginapp

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/roamsession/roam/session"
)

// New returns the application with sessions.
func New(sessions *session.Manager) http.Handler {
	return sessions.Middleware(Engine())
}

// sess returns the request's session; every method of it is safe to call.
func sess(c *gin.Context) *session.Session {
	return session.FromContext(c.Request.Context())
}

// Engine is the gin application itself, unchanged by roam but for the
// sess calls.
func Engine() *gin.Engine {
	r := gin.New()
	r.Use(gin.Recovery())

	r.POST("/login", func(c *gin.Context) {
		user := c.PostForm("username")
		if user == "" || c.PostForm("password") != "secret" {
			c.String(http.StatusUnauthorized, "wrong username or password")
			return
		}
		s := sess(c)
		if err := s.Renew(); err != nil { // a new id at login
			c.String(http.StatusServiceUnavailable, "try again")
			return
		}
		_ = s.SetPrincipal(user)
		_ = s.Put("user", user)
		c.String(http.StatusOK, "welcome %s", user)
	})

	auth := r.Group("/", requireUser)
	auth.GET("/me", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"user": sess(c).GetString("user")})
	})
	auth.POST("/logout", func(c *gin.Context) {
		if err := sess(c).Destroy(); err != nil {
			c.String(http.StatusServiceUnavailable, "try again")
			return
		}
		c.String(http.StatusOK, "bye")
	})

	// A stream. Use c.Writer.Flush and the request's context, not
	// c.Stream: c.Stream asks the writer for http.CloseNotifier, which
	// the session middleware's writer does not implement (net/http
	// deprecated it in favour of the context), and it would panic.
	auth.GET("/ticks", func(c *gin.Context) {
		_ = sess(c).Put("last_stream", time.Now().UTC()) // saved before the first tick goes out
		c.Header("Content-Type", "text/plain")
		for i := 1; i <= 3; i++ {
			select {
			case <-c.Request.Context().Done():
				return
			default:
			}
			fmt.Fprintf(c.Writer, "tick %d\n", i)
			c.Writer.Flush()
		}
	})
	return r
}

// requireUser answers 401 unless the session has a user.
func requireUser(c *gin.Context) {
	if sess(c).GetString("user") == "" {
		c.AbortWithStatusJSON(http.StatusUnauthorized, gin.H{"error": "not logged in"})
		return
	}
	c.Next()
}
