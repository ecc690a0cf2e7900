package session_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

// BenchmarkMiddleware measures one request through the middleware with
// memstore: a handler that never touches the session, one that reads a
// value, and one that writes a value. bench/peers runs the same three
// against alexedwards/scs in the same process for the ratio.
func BenchmarkMiddleware(b *testing.B) {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, err := session.NewManager(store, session.Options{})
	if err != nil {
		b.Fatal(err)
	}
	handlers := map[string]http.HandlerFunc{
		"untouched": func(w http.ResponseWriter, r *http.Request) {},
		"read": func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, session.FromContext(r.Context()).GetString("user"))
		},
		"write": func(w http.ResponseWriter, r *http.Request) {
			s := session.FromContext(r.Context())
			_ = s.Put("counter", s.GetInt("counter")+1)
		},
	}
	login := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = session.FromContext(r.Context()).Put("user", "alice")
	}))
	rec := httptest.NewRecorder()
	login.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
	cookie := rec.Result().Cookies()[0]

	for _, name := range []string{"untouched", "read", "write"} {
		h := m.Middleware(handlers[name])
		b.Run(name, func(b *testing.B) {
			r := httptest.NewRequest("GET", "/", nil)
			r.AddCookie(cookie)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
	}
}

// discardWriter is the cheapest possible ResponseWriter, so the benchmark
// measures the middleware rather than httptest.ResponseRecorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}
