package peers

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/alexedwards/scs/v2"
	scsmem "github.com/alexedwards/scs/v2/memstore"

	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

// discardWriter is the cheapest ResponseWriter, the same for both libraries.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

func run(b *testing.B, h http.Handler, cookie *http.Cookie) {
	r := httptest.NewRequest("GET", "/", nil)
	r.AddCookie(cookie)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

// BenchmarkMiddleware runs the same three handlers (untouched, read one
// value, write one value) through roam with memstore and through scs with
// its memstore. Compare roam/X with scs/X from the same run.
func BenchmarkMiddleware(b *testing.B) {
	b.Run("roam", func(b *testing.B) {
		store := memstore.New(memstore.Options{})
		defer store.Close()
		m, err := session.NewManager(store, session.Options{})
		if err != nil {
			b.Fatal(err)
		}
		rec := httptest.NewRecorder()
		m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = session.FromContext(r.Context()).Put("user", "alice")
		})).ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
		cookie := rec.Result().Cookies()[0]
		b.Run("untouched", func(b *testing.B) {
			run(b, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})), cookie)
		})
		b.Run("read", func(b *testing.B) {
			run(b, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, session.FromContext(r.Context()).GetString("user"))
			})), cookie)
		})
		b.Run("write", func(b *testing.B) {
			run(b, m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := session.FromContext(r.Context())
				_ = s.Put("counter", s.GetInt("counter")+1)
			})), cookie)
		})
	})
	b.Run("scs", func(b *testing.B) {
		sm := scs.New()
		sm.Store = scsmem.New()
		rec := httptest.NewRecorder()
		sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sm.Put(r.Context(), "user", "alice")
		})).ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
		cookie := rec.Result().Cookies()[0]
		b.Run("untouched", func(b *testing.B) {
			run(b, sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})), cookie)
		})
		b.Run("read", func(b *testing.B) {
			run(b, sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, sm.GetString(r.Context(), "user"))
			})), cookie)
		})
		b.Run("write", func(b *testing.B) {
			run(b, sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sm.Put(r.Context(), "counter", sm.GetInt(r.Context(), "counter")+1)
			})), cookie)
		})
	})
}

// TestBothLibrariesKeepTheSession checks that the benchmark's setup really
// round-trips a session in each library, so the numbers compare like with like.
func TestBothLibrariesKeepTheSession(t *testing.T) {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	m, _ := session.NewManager(store, session.Options{})
	sm := scs.New()
	sm.Store = scsmem.New()
	for name, pair := range map[string][2]http.Handler{
		"roam": {
			m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = session.FromContext(r.Context()).Put("user", "alice")
			})),
			m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, session.FromContext(r.Context()).GetString("user"))
			})),
		},
		"scs": {
			sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { sm.Put(r.Context(), "user", "alice") })),
			sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, sm.GetString(r.Context(), "user")) })),
		},
	} {
		rec := httptest.NewRecorder()
		pair[0].ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(rec.Result().Cookies()[0])
		rec = httptest.NewRecorder()
		pair[1].ServeHTTP(rec, r)
		if rec.Body.String() != "alice" {
			t.Errorf("%s: read back %q, want alice", name, rec.Body.String())
		}
	}
}
