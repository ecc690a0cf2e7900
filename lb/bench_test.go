package lb

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkServeHTTP measures the balancer's handler alone (the client
// side is an in-memory recorder; the backend is a real loopback server).
// Run with -benchmem to see allocations per request.
func BenchmarkServeHTTP(b *testing.B) {
	for _, policy := range []string{"round_robin", "cookie"} {
		b.Run(policy, func(b *testing.B) {
			be := startInprocB(b, "a")
			cfg := testConfig(policy, bc("a", be))
			cfg.Health.Interval = Off
			l, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest("GET", "http://lb/", nil)
			req.RemoteAddr = "127.0.0.1:5555"
			w := httptest.NewRecorder()
			l.ServeHTTP(w, req)
			cookie := ""
			for _, c := range w.Result().Cookies() {
				cookie = c.Name + "=" + c.Value
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req := httptest.NewRequest("GET", "http://lb/", nil)
				req.RemoteAddr = "127.0.0.1:5555"
				if cookie != "" {
					req.Header.Set("Cookie", cookie)
				}
				w := httptest.NewRecorder()
				l.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

func startInprocB(b *testing.B, id string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Roam-Node", id)
		w.Write([]byte("hello\n"))
	}))
	b.Cleanup(srv.Close)
	return srv.URL
}
