package demoapp

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func TestMetricsExposeDocumentedNames(t *testing.T) {
	c := newClient(t, serve(t, newApp(t, "n1", newStore(t))))
	c.do("GET", "/api/me", "", "") // 401
	c.login("alice", "wrong")
	c.login("alice", "roam")
	c.do("GET", "/api/me", "", "")
	c.do("POST", "/api/counter", "", "")
	c.do("GET", "/no-such-page", "", "")

	resp, body := c.do("GET", "/metrics", "", "")
	wantStatus(t, "GET /metrics", resp, body, http.StatusOK)
	for _, name := range []string{
		`roam_node_info{node="n1"} 1`,
		`roam_node_http_requests_total{code="401",route="GET /api/me"} 1`,
		`roam_node_http_requests_total{code="200",route="GET /api/me"} 1`,
		`roam_node_http_requests_total{code="200",route="POST /api/counter"} 1`,
		`roam_node_http_requests_total{code="303",route="POST /login"} 1`,
		`roam_node_http_requests_total{code="401",route="POST /login"} 1`,
		`roam_node_http_requests_total{code="404",route="unmatched"} 1`,
		`roam_node_http_request_duration_seconds_bucket{route="GET /api/me",le="+Inf"} 2`,
		`roam_node_http_requests_in_flight 1`, // the scrape itself
		`roam_node_logins_total{result="ok"} 1`,
		`roam_node_logins_total{result="bad_password"} 1`,
		`roam_node_logins_total{result="invalid"} 0`,
		`roam_session_creates_total 1`,
		`roam_session_updates_total 1`,
		`roam_session_touches_total 0`,
		`roam_session_deletes_total 0`,
		`roam_session_errors_total 0`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
	// GET /api/me twice with a cookie (once before login had none), plus
	// the counter POST: at least two loads.
	m := regexp.MustCompile(`(?m)^roam_session_loads_total (\d+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics lacks roam_session_loads_total")
	}
	if n, _ := strconv.Atoi(m[1]); n < 2 {
		t.Errorf("roam_session_loads_total = %d, want at least 2", n)
	}
}
