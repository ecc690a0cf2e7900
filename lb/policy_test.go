package lb

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roamsession/roam/placement"
)

func threeInproc(t *testing.T) ([]*inprocBackend, []BackendConfig) {
	var bs []*inprocBackend
	var cfgs []BackendConfig
	for _, id := range []string{"a", "b", "c"} {
		b := startInproc(t, id)
		bs = append(bs, b)
		cfgs = append(cfgs, bc(id, b.url()))
	}
	return bs, cfgs
}

func TestRoundRobinSpreadsEvenly(t *testing.T) {
	_, cfgs := threeInproc(t)
	tl := startLB(t, testConfig("round_robin", cfgs...))
	c := &http.Client{}
	count := map[string]int{}
	for i := 0; i < 300; i++ {
		n, code, _ := get(t, c, tl.url+"/")
		if code != 200 {
			t.Fatalf("request %d: status %d", i, code)
		}
		count[n]++
	}
	for _, id := range []string{"a", "b", "c"} {
		if count[id] != 100 {
			t.Errorf("backend %s served %d of 300 requests, want exactly 100 (all: %v)", id, count[id], count)
		}
	}
}

func TestLeastConnAvoidsBusyBackend(t *testing.T) {
	bs, cfgs := threeInproc(t)
	tl := startLB(t, testConfig("least_conn", cfgs...))
	// Two slow requests occupy two backends; the next 20 quick ones must
	// all go to the third.
	var wg sync.WaitGroup
	busy := make(chan string, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(tl.url + "/block")
			if err == nil {
				busy <- resp.Header.Get("X-Roam-Node")
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	waitFor(t, 2*time.Second, "two requests in flight", func() bool {
		var n int64
		for _, b := range tl.Backends() {
			n += b.Active()
		}
		return n == 2
	})
	var idle string
	for _, b := range tl.Backends() {
		if b.Active() == 0 {
			idle = b.ID()
		}
	}
	for i := 0; i < 20; i++ {
		if n, _, _ := get(t, http.DefaultClient, tl.url+"/"); n != idle {
			t.Fatalf("request %d went to %s, want the idle backend %s", i, n, idle)
		}
	}
	for _, b := range bs {
		b.unblock()
	}
	wg.Wait()
}

func TestRandomTwoSpreadsLoad(t *testing.T) {
	_, cfgs := threeInproc(t)
	tl := startLB(t, testConfig("random_two", cfgs...))
	count := map[string]int{}
	for i := 0; i < 300; i++ {
		n, _, _ := get(t, http.DefaultClient, tl.url+"/")
		count[n]++
	}
	for _, id := range []string{"a", "b", "c"} {
		if count[id] < 50 || count[id] > 150 {
			t.Errorf("backend %s served %d of 300, want 50..150 (all: %v)", id, count[id], count)
		}
	}
}

func TestCookieStickyOver100Requests(t *testing.T) {
	_, cfgs := threeInproc(t)
	cfg := testConfig("cookie", cfgs...)
	cfg.Cookie.Expiry = Duration(time.Hour)
	tl := startLB(t, cfg)

	resp, err := http.Get(tl.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	first := resp.Header.Get("X-Roam-Node")
	raw := resp.Header.Get("Set-Cookie")
	for _, want := range []string{"roam_lb=", "Path=/", "Max-Age=3600", "HttpOnly", "SameSite=Lax"} {
		if !strings.Contains(raw, want) {
			t.Errorf("Set-Cookie %q lacks %q", raw, want)
		}
	}
	if strings.Contains(raw, "Secure") {
		t.Errorf("Set-Cookie %q has Secure on plain HTTP with secure: auto", raw)
	}
	val := setCookieValue(resp, "roam_lb")
	rawVal, err := base64.RawURLEncoding.DecodeString(val)
	if err != nil {
		t.Fatalf("cookie value %q: %v", val, err)
	}
	for _, b := range tl.Backends() {
		for _, secret := range []string{b.URL().Host, b.URL().Port(), "127.0.0.1"} {
			if strings.Contains(val, secret) || strings.Contains(string(rawVal), secret) {
				t.Errorf("cookie value %q reveals backend %s (%s)", val, b.ID(), b.URL())
			}
		}
	}

	// 100 requests, three clients each: each client stays where it began.
	for client := 0; client < 3; client++ {
		c := newClient()
		home, _, _ := get(t, c, tl.url+"/")
		for i := 0; i < 100; i++ {
			if n, _, _ := get(t, c, tl.url+"/"); n != home {
				t.Fatalf("client %d request %d went to %s, pinned to %s", client, i, n, home)
			}
		}
	}
	if first == "" {
		t.Fatal("no X-Roam-Node on the first response")
	}
}

func TestCookieSpreadsNewClients(t *testing.T) {
	_, cfgs := threeInproc(t)
	tl := startLB(t, testConfig("cookie", cfgs...))
	count := map[string]int{}
	for i := 0; i < 90; i++ {
		n, _, _ := get(t, newClient(), tl.url+"/")
		count[n]++
	}
	for _, id := range []string{"a", "b", "c"} {
		if count[id] < 15 {
			t.Errorf("backend %s got %d of 90 new clients (all %v); least_conn fallback should spread them", id, count[id], count)
		}
	}
}

func TestCookieTamperedCountsAsNoCookie(t *testing.T) {
	_, cfgs := threeInproc(t)
	tl := startLB(t, testConfig("cookie", cfgs...))
	resp, err := http.Get(tl.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	val := setCookieValue(resp, "roam_lb")
	if len(val) != cookieValueLen {
		t.Fatalf("cookie value %q has length %d, want %d", val, len(val), cookieValueLen)
	}
	// Flip one character in each part: token, timestamp, MAC; and forge
	// garbage of the right length and of the wrong length.
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	cases := []string{flip(val, 0), flip(val, 12), flip(val, len(val)-1), strings.Repeat("A", cookieValueLen), "x", val + "A"}
	for _, bad := range cases {
		req, _ := http.NewRequest("GET", tl.url+"/", nil)
		req.AddCookie(&http.Cookie{Name: "roam_lb", Value: bad})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("tampered cookie %q: status %d, want 200 (placed as a new client)", bad, resp.StatusCode)
		}
		nv := setCookieValue(resp, "roam_lb")
		if nv == "" || nv == bad {
			t.Errorf("tampered cookie %q: response set %q, want a fresh signed cookie", bad, nv)
		}
	}
	// The good cookie still pins.
	req, _ := http.NewRequest("GET", tl.url+"/", nil)
	req.AddCookie(&http.Cookie{Name: "roam_lb", Value: val})
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if got := resp2.Header.Get("X-Roam-Node"); got != resp.Header.Get("X-Roam-Node") {
		t.Errorf("valid cookie went to %s, pinned to %s", got, resp.Header.Get("X-Roam-Node"))
	}
	if setCookieValue(resp2, "roam_lb") != "" {
		t.Errorf("valid session cookie (no expiry) was re-issued")
	}
	m := scrape(t, tl)
	if !strings.Contains(m, `roam_lb_sticky_cookie_rejected_total{reason="invalid"} 6`) {
		t.Errorf("metrics do not count 6 invalid cookies:\n%s", grepLines(m, "rejected"))
	}
}

func TestCookieSecureWhenForwardedHTTPSFromTrustedProxy(t *testing.T) {
	_, cfgs := threeInproc(t)
	cfg := testConfig("cookie", cfgs...)
	cfg.TrustedProxies = []string{"127.0.0.1"}
	tl := startLB(t, cfg)
	req, _ := http.NewRequest("GET", tl.url+"/", nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "; Secure") {
		t.Errorf("Set-Cookie %q lacks Secure behind a trusted TLS proxy", sc)
	}
}

func TestHashCookieFollowsSessionCookie(t *testing.T) {
	_, cfgs := threeInproc(t)
	tl := startLB(t, testConfig("hash_cookie", cfgs...))
	count := map[string]int{}
	for s := 0; s < 60; s++ {
		sid := fmt.Sprintf("session-%d", s)
		var home string
		for i := 0; i < 5; i++ {
			n, _, _ := get(t, http.DefaultClient, tl.url+"/", "Cookie", "roam_session="+sid)
			if i == 0 {
				home = n
				count[n]++
			} else if n != home {
				t.Fatalf("session %s went to %s then %s", sid, home, n)
			}
		}
		if want := placement.Primary(sid, []string{"a", "b", "c"}); home != want {
			t.Errorf("session %s on %s, rendezvous says %s", sid, home, want)
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		if count[id] < 8 {
			t.Errorf("backend %s owns %d of 60 sessions (all %v)", id, count[id], count)
		}
	}
}

func TestIPHashStickyAndSpoofedXFFIgnored(t *testing.T) {
	_, cfgs := threeInproc(t)
	tl := startLB(t, testConfig("ip_hash", cfgs...))
	home, _, _ := get(t, http.DefaultClient, tl.url+"/")
	for i := 0; i < 100; i++ {
		spoof := fmt.Sprintf("10.%d.%d.%d", i, i*7%256, i*13%256)
		n, _, body := get(t, http.DefaultClient, tl.url+"/echo", "X-Forwarded-For", spoof, "X-Real-Ip", spoof, "Forwarded", "for="+spoof)
		if n != home {
			t.Fatalf("request %d with spoofed X-Forwarded-For %s went to %s, the client's backend is %s", i, spoof, n, home)
		}
		if strings.Contains(body, spoof) {
			t.Fatalf("spoofed address %s from an untrusted client reached the backend: %s", spoof, body)
		}
	}
}

func TestIPHashTrustsForwardedForFromTrustedProxy(t *testing.T) {
	_, cfgs := threeInproc(t)
	cfg := testConfig("ip_hash", cfgs...)
	cfg.TrustedProxies = []string{"127.0.0.0/8"}
	tl := startLB(t, cfg)
	count := map[string]int{}
	for i := 0; i < 60; i++ {
		client := fmt.Sprintf("198.51.%d.%d", i, i*3)
		var home string
		for j := 0; j < 3; j++ {
			n, _, body := get(t, http.DefaultClient, tl.url+"/echo", "X-Forwarded-For", client)
			if j == 0 {
				home = n
				if !strings.Contains(body, client+", 127.0.0.1") {
					t.Fatalf("X-Forwarded-For from a trusted proxy not extended: %s", body)
				}
			} else if n != home {
				t.Fatalf("client %s moved from %s to %s", client, home, n)
			}
		}
		count[home]++
	}
	if len(count) != 3 {
		t.Errorf("60 forwarded clients landed on %d backends (%v), want all 3", len(count), count)
	}
}

// TestIPHashMovementOnScaleOut measures the share of clients that change
// backend when a fourth backend joins three, for both forms.
func TestIPHashMovementOnScaleOut(t *testing.T) {
	mk := func(ids ...string) []*Backend {
		var bs []*Backend
		for _, id := range ids {
			b := &Backend{id: id}
			b.checkUp.Store(true)
			bs = append(bs, b)
		}
		return bs
	}
	three := mk("n1", "n2", "n3")
	four := append(append([]*Backend(nil), three...), mk("n4")...)
	const clients = 10000
	for _, tc := range []struct {
		form     string
		min, max float64
	}{
		{"modulo", 0.70, 0.80},     // hash mod 3 vs mod 4 agree for 1/4 of hashes
		{"consistent", 0.22, 0.28}, // only what n4 wins: 1/4
	} {
		pol := &ipHash{modulo: tc.form == "modulo"}
		moved := 0
		for i := 0; i < clients; i++ {
			ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
			before := pickFor(pol, three, ip)
			after := pickFor(pol, four, ip)
			if before.id != after.id {
				moved++
			}
		}
		share := float64(moved) / clients
		t.Logf("ip_hash %s: %d of %d clients (%.1f%%) moved when a 4th backend joined 3", tc.form, moved, clients, 100*share)
		if share < tc.min || share > tc.max {
			t.Errorf("ip_hash %s moved %.3f of clients, want %.2f..%.2f", tc.form, share, tc.min, tc.max)
		}
	}
}

func pickFor(p Policy, all []*Backend, ip string) *Backend {
	rs := getReqState()
	defer putReqState(rs)
	rs.clientIP = ip
	return p.Pick(Pool{all: all, rs: rs, now: nowNano()}, &http.Request{Header: http.Header{}})
}

func TestOwnerRoutesToPlacementPrimary(t *testing.T) {
	_, cfgs := threeInproc(t)
	tl := startLB(t, testConfig("owner", cfgs...))
	ids := []string{"a", "b", "c"}
	for s := 0; s < 50; s++ {
		sid := fmt.Sprintf("sid-%03d", s)
		want := placement.Rank(sid, ids, 1)[0]
		if n, _, _ := get(t, http.DefaultClient, tl.url+"/", "Cookie", "other=1; roam_session="+sid); n != want {
			t.Errorf("session %s went to %s, its primary is %s", sid, n, want)
		}
	}
}

func TestCookieValueParsing(t *testing.T) {
	h := http.Header{"Cookie": {"a=1; roam_session=abc ; roam_lb=\"q\"", "x=2"}}
	for _, tc := range []struct{ name, want string }{{"roam_session", "abc"}, {"roam_lb", "q"}, {"x", "2"}, {"a", "1"}} {
		if got, ok := cookieValue(h, tc.name); !ok || got != tc.want {
			t.Errorf("cookieValue(%s) = %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
	if _, ok := cookieValue(h, "roam"); ok {
		t.Errorf("prefix of a cookie name matched")
	}
}
