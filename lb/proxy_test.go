package lb

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

func scrape(t *testing.T, tl *testLB) string {
	t.Helper()
	resp, err := http.Get(tl.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestProxyHeaders(t *testing.T) {
	b := startInproc(t, "a")
	tl := startLB(t, testConfig("round_robin", bc("a", b.url())))
	req, _ := http.NewRequest("GET", tl.url+"/echo?q=1", nil)
	req.Host = "shop.example"
	req.Header.Set("Connection", "keep-alive, X-Secret-Hop")
	req.Header.Set("X-Secret-Hop", "must not pass")
	req.Header.Set("Keep-Alive", "timeout=5")
	req.Header.Set("Proxy-Authorization", "Basic abc")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header["User-Agent"] = []string{""} // the Go client then sends none
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Headers http.Header
		Host    string
		Query   string
	}
	json.NewDecoder(resp.Body).Decode(&got)
	h := got.Headers
	for _, k := range []string{"X-Secret-Hop", "Keep-Alive", "Proxy-Authorization"} {
		if v := h.Get(k); v != "" {
			t.Errorf("hop-by-hop header %s reached the backend: %q", k, v)
		}
	}
	if v := h.Get("X-Forwarded-For"); v != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want 127.0.0.1 (the untrusted client's claim dropped)", v)
	}
	if v := h.Get("X-Forwarded-Host"); v != "shop.example" {
		t.Errorf("X-Forwarded-Host = %q, want shop.example", v)
	}
	if v := h.Get("X-Forwarded-Proto"); v != "http" {
		t.Errorf("X-Forwarded-Proto = %q, want http", v)
	}
	if got.Host != "shop.example" || got.Query != "q=1" {
		t.Errorf("backend saw host %q query %q", got.Host, got.Query)
	}
	if v := h.Get("User-Agent"); v != "" {
		t.Errorf("client sent no User-Agent, backend saw %q", v)
	}
}

func TestOversizedHeadersGet431(t *testing.T) {
	b := startInproc(t, "a")
	cfg := testConfig("round_robin", bc("a", b.url()))
	cfg.Limits.MaxHeaderBytes = 8 << 10
	tl := startLB(t, cfg)
	req, _ := http.NewRequest("GET", tl.url+"/", nil)
	req.Header.Set("X-Big", strings.Repeat("x", 32<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("32 KiB header with an 8 KiB limit: status %d, want 431", resp.StatusCode)
	}
	if b.hitsOf("/") != 0 {
		t.Errorf("oversized request reached the backend")
	}
}

func TestOversizedBodyGets413(t *testing.T) {
	b := startInproc(t, "a")
	cfg := testConfig("round_robin", bc("a", b.url()))
	cfg.Limits.MaxBodyBytes = 1000
	tl := startLB(t, cfg)
	resp, err := http.Post(tl.url+"/echo", "text/plain", strings.NewReader(strings.Repeat("x", 2000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("2000-byte body with a 1000-byte limit: status %d, want 413", resp.StatusCode)
	}
	// Chunked (unknown length) bodies are cut at the limit too.
	pr, pw := io.Pipe()
	go func() { pw.Write([]byte(strings.Repeat("y", 3000))); pw.Close() }()
	resp, err = http.Post(tl.url+"/echo", "text/plain", pr)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 && strings.Contains(string(body), `"body_len":3000`) {
		t.Errorf("a 3000-byte chunked body passed a 1000-byte limit")
	}
}

func TestSlowlorisHeadersAreCut(t *testing.T) {
	b := startInproc(t, "a")
	cfg := testConfig("round_robin", bc("a", b.url()))
	cfg.Timeouts.ReadHeader = Duration(200 * time.Millisecond)
	tl := startLB(t, cfg)
	conn, err := net.Dial("tcp", strings.TrimPrefix(tl.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n") // and never finish
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(conn)
	if err != nil {
		t.Fatalf("connection not closed by the balancer: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("slow client held the connection %v", d)
	}
}

func TestStreamingResponseIsFlushed(t *testing.T) {
	bs, cfgs := threeProcs(t)
	_ = bs
	tl := startLB(t, testConfig("round_robin", cfgs...))
	start := time.Now()
	resp, err := http.Get(tl.url + "/stream?n=2&ms=1500")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second || line != "chunk 0\n" {
		t.Errorf("first chunk %q after %v; want it long before the stream ends at 1.5s", line, d)
	}
}

func TestWebSocketThroughBalancer(t *testing.T) {
	_, cfgs := threeProcs(t)
	tl := startLB(t, testConfig("cookie", cfgs...))
	ws, err := websocket.Dial(strings.Replace(tl.url, "http", "ws", 1)+"/ws", "", tl.url)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for i := 0; i < 5; i++ {
		msg := fmt.Sprintf("hello %d", i)
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		ws.SetReadDeadline(time.Now().Add(2 * time.Second))
		if err := websocket.Message.Receive(ws, &got); err != nil || got != msg {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
	}
	waitFor(t, time.Second, "the WebSocket counted as active", func() bool {
		var n int64
		for _, b := range tl.Backends() {
			n += b.Active()
		}
		return n == 1
	})
}

func TestDrainingKeepsPinnedClientsUntilTimeout(t *testing.T) {
	_, cfgs := threeInproc(t)
	tl := startLB(t, testConfig("cookie", cfgs...))
	c := newClient()
	home, _, _ := get(t, c, tl.url+"/")
	if err := tl.Drain(home, time.Minute); err != nil {
		t.Fatal(err)
	}
	if s := tl.state(home); s != "draining" {
		t.Fatalf("state %q, want draining", s)
	}
	for i := 0; i < 20; i++ {
		if n, _, _ := get(t, newClient(), tl.url+"/"); n == home {
			t.Fatalf("new client %d placed on draining %s", i, home)
		}
		if n, _, _ := get(t, c, tl.url+"/"); n != home {
			t.Fatalf("pinned client moved off draining %s before the timeout (to %s)", home, n)
		}
	}
	// Shorten the drain: once it has passed the pinned client moves.
	if err := tl.Drain(home, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var n string
	waitFor(t, 3*time.Second, "the pinned client to be re-pinned after the drain timeout", func() bool {
		n, _, _ = get(t, c, tl.url+"/")
		return n != home
	})
	if n2, _, _ := get(t, c, tl.url+"/"); n2 != n {
		t.Errorf("after drain: re-pinned to %s, next request %s", n, n2)
	}
	// Through the admin API: undrain.
	resp, err := http.Post(tl.admin+"/api/nodes/"+home+"/undrain", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := tl.state(home); resp.StatusCode != 200 || s != "up" {
		t.Errorf("undrain: status %d, state %s", resp.StatusCode, s)
	}
}

func TestAdminAPI(t *testing.T) {
	_, cfgs := threeInproc(t)
	cfgs[0].PID = 4242
	tl := startLB(t, testConfig("round_robin", cfgs...))
	for i := 0; i < 6; i++ {
		get(t, http.DefaultClient, tl.url+"/")
	}
	resp, err := http.Get(tl.admin + "/api/nodes")
	if err != nil {
		t.Fatal(err)
	}
	var nodes []map[string]any
	json.NewDecoder(resp.Body).Decode(&nodes)
	resp.Body.Close()
	if len(nodes) != 3 {
		t.Fatalf("/api/nodes returned %d nodes", len(nodes))
	}
	n0 := nodes[0]
	if n0["id"] != "a" || n0["state"] != "up" || n0["pid"] != float64(4242) || n0["requests"] != float64(2) || n0["addr"] == "" {
		t.Errorf("node a = %v", n0)
	}
	if _, ok := nodes[1]["pid"]; ok {
		t.Errorf("unknown pid shown: %v", nodes[1])
	}
	resp, err = http.Post(tl.admin+"/api/nodes/b/drain?timeout=1m", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var n map[string]any
	json.NewDecoder(resp.Body).Decode(&n)
	resp.Body.Close()
	if n["state"] != "draining" {
		t.Errorf("after POST drain: %v", n)
	}
	resp, _ = http.Post(tl.admin+"/api/nodes/zz/drain", "", nil)
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("drain of unknown node: %d", resp.StatusCode)
	}
	m := scrape(t, tl)
	for _, want := range []string{
		`roam_lb_requests_total{backend="a",code="200"} 2`,
		`roam_lb_backend_state{backend="b",state="draining"} 1`,
		`roam_lb_active_requests{backend="c"} 0`,
		`roam_lb_request_duration_seconds_bucket{backend="a"`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	resp, _ = http.Get(tl.admin + "/healthz")
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz %d", resp.StatusCode)
	}
	// The caller can add routes to the admin mux.
	tl.AdminHandler().HandleFunc("POST /api/nodes/{id}/kill", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "killed "+r.PathValue("id")) })
	resp, _ = http.Post(tl.admin+"/api/nodes/a/kill", "", nil)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "killed a" {
		t.Errorf("extra admin route: %q", b)
	}
}

func TestRuntimeAddRemoveBackend(t *testing.T) {
	bs, cfgs := threeInproc(t)
	tl := startLB(t, testConfig("round_robin", cfgs[:2]...))
	if err := tl.AddBackend(cfgs[2]); err != nil {
		t.Fatal(err)
	}
	if err := tl.AddBackend(cfgs[2]); err == nil {
		t.Fatal("adding a duplicate backend succeeded")
	}
	seen := map[string]int{}
	for i := 0; i < 30; i++ {
		n, _, _ := get(t, http.DefaultClient, tl.url+"/")
		seen[n]++
	}
	if seen[bs[2].id] != 10 {
		t.Errorf("added backend served %d of 30: %v", seen[bs[2].id], seen)
	}
	if err := tl.RemoveBackend("a"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if n, _, _ := get(t, http.DefaultClient, tl.url+"/"); n == "a" {
			t.Fatal("removed backend still served")
		}
	}
	if err := tl.RemoveBackend("a"); err == nil {
		t.Error("removing an unknown backend succeeded")
	}
}

func TestReloadKeepsConnectionsAndSwapsPolicy(t *testing.T) {
	_, cfgs := threeInproc(t)
	tl := startLB(t, testConfig("round_robin", cfgs...))
	// A keep-alive client connection opened before the reload.
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1}}
	get(t, c, tl.url+"/")
	slow := make(chan int, 1)
	go func() {
		resp, err := http.Get(tl.url + "/slow")
		if err != nil {
			slow <- -1
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	waitFor(t, 2*time.Second, "slow request in flight", func() bool {
		for _, b := range tl.Backends() {
			if b.Active() > 0 {
				return true
			}
		}
		return false
	})
	next := testConfig("cookie", cfgs[1:]...)
	if err := tl.Reload(next); err != nil {
		t.Fatal(err)
	}
	if code := <-slow; code != 200 {
		t.Errorf("request in flight across the reload: %d", code)
	}
	for i := 0; i < 10; i++ {
		n, code, _ := get(t, c, tl.url+"/")
		if code != 200 || n == "a" {
			t.Fatalf("after reload: %d from %s (a was removed)", code, n)
		}
	}
	resp, _ := http.Get(tl.url + "/")
	resp.Body.Close()
	if setCookieValue(resp, "roam_lb") == "" {
		t.Errorf("after reload to cookie policy: no sticky cookie")
	}
	bad := testConfig("cookie", cfgs...)
	bad.Listen = "127.0.0.1:1"
	if err := tl.Reload(bad); err == nil {
		t.Errorf("reload changing listen accepted")
	}
}

func TestRetryOn503ForIdempotentOnly(t *testing.T) {
	ok := startInproc(t, "ok")
	tl := startLB(t, testConfig("round_robin", bc("bad", startInproc(t, "bad").url()), bc("ok", ok.url())))
	// A POST is not replayed after a 503: the backend may have acted on it.
	// (First: the GETs below get bad ejected.)
	sawBad := false
	for i := 0; i < 6; i++ {
		resp, err := http.Post(tl.url+"/status503", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 503 && resp.Header.Get("X-Roam-Node") == "bad" {
			sawBad = true
		}
	}
	if !sawBad {
		t.Errorf("no POST saw bad's 503: POSTs were retried")
	}
	for i := 0; i < 6; i++ {
		n, code, _ := get(t, http.DefaultClient, tl.url+"/status503")
		if code != 200 || n != "ok" {
			t.Fatalf("GET %d answered %d by %s, want 200 by ok (503 retried)", i, code, n)
		}
	}
}

func TestAllBackendsDownAnswers503Quickly(t *testing.T) {
	bs, cfgs := threeProcs(t)
	cfg := testConfig("cookie", cfgs...)
	tl := startLB(t, cfg)
	for _, b := range bs {
		b.kill()
	}
	start := time.Now()
	_, code, _ := get(t, http.DefaultClient, tl.url+"/")
	if code != 502 && code != 503 {
		t.Errorf("all backends dead: status %d, want 502 or 503", code)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("all backends dead: answer took %v", d)
	}
	waitFor(t, 3*time.Second, "all down", func() bool {
		for _, n := range tl.Nodes() {
			if n.State != "down" {
				return false
			}
		}
		return true
	})
	if _, code, _ := get(t, http.DefaultClient, tl.url+"/"); code != 503 {
		t.Errorf("every backend down: %d, want 503", code)
	}
}

func TestTLSTermination(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	writeSelfSigned(t, cert, key)
	b := startInproc(t, "a")
	cfg := testConfig("cookie", bc("a", b.url()))
	cfg.TLS = TLSConfig{Cert: cert, Key: key}
	tl := startLB(t, cfg)
	c := &http.Client{Transport: insecureTransport()}
	resp, err := c.Get(strings.Replace(tl.url, "http://", "https://", 1) + "/echo")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "; Secure") {
		t.Errorf("cookie over TLS lacks Secure: %q", sc)
	}
	if !strings.Contains(string(body), `"X-Forwarded-Proto":["https"]`) {
		t.Errorf("backend not told https: %s", body)
	}
	// HTTP/2 clients are served too (the backend side stays HTTP/1.1).
	h2 := insecureTransport()
	h2.ForceAttemptHTTP2 = true
	resp, err = (&http.Client{Transport: h2}).Get(strings.Replace(tl.url, "http://", "https://", 1) + "/echo?x=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || !strings.Contains(string(body), `"query":"x=1"`) {
		t.Errorf("over HTTP/2: proto %s status %d body %s", resp.Proto, resp.StatusCode, body)
	}
	_ = os.Remove
}

// TestAdminRefusesForeignHosts is DNS rebinding: a page whose own name now
// points at the admin listener sends Host and Origin of that name, which a
// cross-origin check alone lets through. The admin listener answers 421 and
// the backend stays up; localhost and configured admin_hosts still work.
func TestAdminRefusesForeignHosts(t *testing.T) {
	_, cfgs := threeInproc(t)
	cfg := testConfig("round_robin", cfgs...)
	cfg.AdminHosts = []string{"roam-lb.internal"}
	tl := startLB(t, cfg)
	post := func(host string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, tl.admin+"/api/nodes/a/drain", nil)
		req.Host = host
		req.Header.Set("Origin", "http://"+host)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("evil.example:8081"); code != http.StatusMisdirectedRequest {
		t.Fatalf("drain with a foreign Host: %d, want 421", code)
	}
	if s := tl.state("a"); s != "up" {
		t.Fatalf("backend a after a refused drain: %s, want up", s)
	}
	if code := post("roam-lb.internal:8081"); code != http.StatusOK {
		t.Fatalf("drain with a configured admin host: %d, want 200", code)
	}
	if code := post("localhost"); code != http.StatusOK {
		t.Fatalf("drain via localhost: %d, want 200", code)
	}
}

// TestOpaqueRequestTargetIsRefused: net/http parses "POST mailto:x" as an
// opaque URL and its Transport would forward it mangled ("POST x"); the
// balancer answers 400 itself and no backend sees it.
func TestOpaqueRequestTargetIsRefused(t *testing.T) {
	b := startInproc(t, "a")
	tl := startLB(t, testConfig("round_robin", bc("a", b.url())))
	// ("x" alone never reaches the handler: net/http refuses it.)
	for _, target := range []string{"mailto:x", "A:0", "x"} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(tl.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, "POST "+target+" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatalf("target %q: %v", target, err)
		}
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Roam-Node") != "" {
			t.Errorf("target %q: status %d (node %q), want 400 from the balancer", target, resp.StatusCode, resp.Header.Get("X-Roam-Node"))
		}
	}
	if m := scrape(t, tl); !strings.Contains(m, `roam_lb_proxy_errors_total{kind="bad_target"} 2`) {
		t.Errorf("the balancer did not answer both opaque targets itself (no bad_target errors counted)")
	}
}
