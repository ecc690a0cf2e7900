package dashboard

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
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

// TestDNSRebindingCannotKillANode is the attack: the page's own name
// re-pointed at the admin listener, so Origin and Host agree and the
// cross-origin check passes it. Behind RequireLocalHost it is refused and
// the node lives; a request for 127.0.0.1 still works.
func TestDNSRebindingCannotKillANode(t *testing.T) {
	tb := newTable(2)
	d, err := New(Config{Strategy: testStrategy, Nodes: tb.list, Control: tb})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	d.Register(mux)
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = RequireLocalHost(mux, srv.Listener.Addr().String())
	srv.Start()
	t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	kill := func(host string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/nodes/n2/kill", nil)
		req.Host = host
		origin := (&url.URL{Scheme: "http", Host: host}).String()
		req.Header.Set("Origin", origin)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.Header.Set("Accept", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := kill("evil.example:" + strconv.Itoa(port)); code != http.StatusMisdirectedRequest {
		t.Fatalf("rebound kill = %d %q, want 421", code, body)
	}
	if n := tb.list()[1]; n.Process != "running" {
		t.Fatalf("n2 is %s after a rebound kill, want running", n.Process)
	}
	if code, body := kill(srv.Listener.Addr().String()); code != http.StatusOK {
		t.Fatalf("kill from the listener's own address = %d %q, want 200", code, body)
	}
	if n := tb.list()[1]; n.Process != "killed" {
		t.Fatalf("n2 is %s after a local kill, want killed", n.Process)
	}
}
