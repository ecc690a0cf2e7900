package dashboard

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"

	"github.com/roamsession/roam/internal/adminhost"
)

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
	srv.Config.Handler = adminhost.RequireLocalHost(mux, srv.Listener.Addr().String())
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
