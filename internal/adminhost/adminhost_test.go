package adminhost

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRequireLocalHostAllowsOnlyLocalNames(t *testing.T) {
	// As the server sets it: the address the connection arrived on.
	local := &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 8081}
	h := RequireLocalHost(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("next"))
	}), "admin.internal:8081", "0.0.0.0:8081", ":8081")
	for host, want := range map[string]bool{
		"localhost":        true,
		"localhost:8081":   true,
		"LocalHost.:8081":  true,
		"127.0.0.1":        true,
		"127.0.0.1:8081":   true,
		"127.9.9.9:1":      true,
		"[::1]:8081":       true,
		"[::1]":            true,
		"::1":              true,
		"10.1.2.3:8081":    true, // the listener's own address
		"10.1.2.3":         true,
		"admin.internal":   true, // a configured name
		"admin.internal:1": true,

		"":                            false,
		"evil.example":                false,
		"evil.example:8081":           false,
		"localhost.evil.example":      false,
		"127.0.0.1.evil.example":      false,
		"evil.example:8081:extra":     false,
		"10.1.2.4:8081":               false, // another machine's address
		"0.0.0.0:8081":                false, // configured, but unspecified
		"[::]:8081":                   false,
		"admin.internal.evil":         false,
		"localhost:8081@evil.example": false,
		"localhost:http":              false,
	} {
		req := httptest.NewRequest(http.MethodPost, "/api/nodes/n1/kill", nil)
		req.Host = host
		req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, net.Addr(local)))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		switch {
		case want && (w.Code != http.StatusOK || w.Body.String() != "next"):
			t.Errorf("Host %q: %d %q, want it passed on", host, w.Code, w.Body.String())
		case !want && w.Code != http.StatusMisdirectedRequest:
			t.Errorf("Host %q: %d %q, want 421", host, w.Code, w.Body.String())
		case !want && (w.Body.String() != misdirected || strings.Contains(w.Body.String(), "evil")):
			t.Errorf("Host %q: body %q, want the fixed short message", host, w.Body.String())
		}
	}
}
