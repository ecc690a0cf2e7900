package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/internal/storespec"
	"github.com/roamsession/roam/internal/testbin"
)

func TestMain(m *testing.M) { testbin.Main(m) }

// startNode runs `roam node --id n1 --listen 127.0.0.1:0 --store memory` as
// a real process and returns it with its base URL once it has printed its
// ready line; stderr receives a copy of its log. The process is killed with
// SIGKILL at cleanup unless the test stopped it already.
func startNode(t *testing.T, stderr io.Writer) (*proc.Process, string) {
	t.Helper()
	n := testbin.StartNode(t, testbin.NodeOptions{ID: "n1", Store: "memory", Stderr: stderr})
	return n.Process, n.URL
}

// httpClient is a client with a cookie jar that does not follow redirects.
type httpClient struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newHTTPClient(t *testing.T, base string) *httpClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &httpClient{t: t, base: base, hc: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a request and checks its status and X-Roam-Node; it returns the
// response and its body.
func (c *httpClient) do(method, path, contentType string, body io.Reader, wantCode int) (*http.Response, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if resp.StatusCode != wantCode {
		c.t.Fatalf("%s %s: status %d, want %d; body: %.300s", method, path, resp.StatusCode, wantCode, b)
	}
	if n := resp.Header.Get("X-Roam-Node"); n != "n1" {
		c.t.Fatalf("%s %s: X-Roam-Node %q, want n1", method, path, n)
	}
	return resp, string(b)
}

func (c *httpClient) cookie(name string) *http.Cookie {
	u, _ := url.Parse(c.base)
	for _, ck := range c.hc.Jar.Cookies(u) {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}

const formType = "application/x-www-form-urlencoded"

func TestNodeProcessServesTheLoginStoryAndStopsOnSIGTERM(t *testing.T) {
	stderr := testbin.NewLineWatcher(`msg="shutting down"`)
	p, base := startNode(t, stderr)
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("ready line URL %q, want http://127.0.0.1:PORT", base)
	}
	c := newHTTPClient(t, base)

	c.do("GET", "/healthz", "", nil, 200)
	c.do("GET", "/readyz", "", nil, 200)
	resp, _ := c.do("POST", "/login", formType, strings.NewReader("username=alice&password=roam"), 303)
	if sc := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(sc, "roam_session=") || strings.Contains(sc, "Secure") {
		t.Fatalf("login Set-Cookie %q, want roam_session without Secure (the node serves plain http)", sc)
	}
	_, body := c.do("GET", "/api/me", "", nil, 200)
	if want := `{"node":"n1","user":"alice","counter":0}` + "\n"; body != want {
		t.Fatalf("GET /api/me = %q, want %q", body, want)
	}
	_, body = c.do("POST", "/api/counter", "", nil, 200)
	if want := `{"node":"n1","counter":1}` + "\n"; body != want {
		t.Fatalf("POST /api/counter = %q, want %q", body, want)
	}

	// A tampered copy of alice's cookie is nobody's session.
	ck := c.cookie("roam_session")
	tampered := newHTTPClient(t, base)
	u, _ := url.Parse(base)
	v := []byte(ck.Value)
	v[0] ^= 'A' ^ 'B' // stays in the base64url alphabet either way
	tampered.hc.Jar.SetCookies(u, []*http.Cookie{{Name: "roam_session", Value: string(v), Path: "/"}})
	tampered.do("GET", "/api/me", "", nil, 401)

	c.do("POST", "/logout", formType, nil, 303)
	c.do("GET", "/api/me", "", nil, 401)

	// Graceful shutdown: a login whose body is still arriving when SIGTERM
	// lands is finished before the process exits 0.
	c.do("POST", "/login", formType, strings.NewReader("username=bob&password=roam"), 303)
	pr, pw := io.Pipe()
	slow := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("POST", base+"/login", pr)
		req.Header.Set("Content-Type", formType)
		req.Header.Set("Accept", "application/json")
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			slow <- err
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"user":"carol"`) {
			slow <- fmt.Errorf("in-flight login answered %d %s, want 200 for carol", resp.StatusCode, b)
			return
		}
		slow <- nil
	}()
	if _, err := io.WriteString(pw, "username=carol&"); err != nil {
		t.Fatal(err)
	}
	waitInFlight(t, base, 2) // the slow login and the scrape itself

	stopped := make(chan error, 1)
	go func() { stopped <- p.Stop(20 * time.Second) }()
	stderr.Await(t, p, 10*time.Second)

	// No new connections are accepted once shutdown has begun.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := proc.Poll(ctx, func(context.Context) error {
		resp, err := fresh.Get(base + "/healthz")
		if err != nil {
			return nil // refused: the listener is closed
		}
		resp.Body.Close()
		return errors.New("still accepting connections")
	}); err != nil {
		t.Fatalf("after SIGTERM: %v", err)
	}
	select {
	case <-p.Exited():
		t.Fatalf("the node exited with a request in flight; output:\n%s", p.Output())
	default:
	}

	if _, err := io.WriteString(pw, "password=roam"); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := <-slow; err != nil {
		t.Fatalf("in-flight request during shutdown: %v", err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v; output:\n%s", err, p.Output())
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("after SIGTERM the node exited with %v, want status 0; output:\n%s", err, p.Output())
	}
	if out := p.Output(); !strings.Contains(out, `msg=stopped`) {
		t.Fatalf("the node did not log that it stopped; output:\n%s", out)
	}
}

// waitInFlight polls /metrics until at least n requests are in flight.
func waitInFlight(t *testing.T, base string, n int) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^roam_node_http_requests_in_flight (\d+)$`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := proc.Poll(ctx, func(context.Context) error {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := re.FindSubmatch(b)
		if m == nil {
			return errors.New("no roam_node_http_requests_in_flight in /metrics")
		}
		if got, _ := strconv.Atoi(string(m[1])); got < n {
			return fmt.Errorf("%d requests in flight, want %d", got, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVersionRuns(t *testing.T) {
	out, err := exec.Command(testbin.Roam(t), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("roam version: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`^roam \S+ go\S+ \w+/\w+\n$`).Match(out) {
		t.Fatalf("roam version printed %q, want \"roam VERSION GOVERSION OS/ARCH\"", out)
	}
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// runRoam runs the roam command tree in this process with args until ctx
// is done, returning what it printed and its error.
func runRoam(ctx context.Context, stdout *syncBuffer, args ...string) error {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(io.Discard)
	return root.ExecuteContext(ctx)
}

func TestNodeCookieSecureAndInProcessShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runRoam(ctx, &out, "node", "--id", "n1", "--listen", "127.0.0.1:0", "--cookie-secure",
			"--demo-password", "s3cret", "--log-format", "json", "--log-level", "error")
	}()
	re := regexp.MustCompile(testbin.NodeReadyLine[:len(testbin.NodeReadyLine)-1]) // the buffer may hold more after the line
	var base string
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	if err := proc.Poll(pctx, func(context.Context) error {
		select {
		case err := <-done:
			return fmt.Errorf("roam node returned early: %v", err)
		default:
		}
		m := re.FindStringSubmatch(out.String())
		if m == nil {
			return errors.New("no ready line yet")
		}
		base = m[2]
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c := newHTTPClient(t, base)
	c.do("POST", "/login", formType, strings.NewReader("username=alice&password=roam"), 401)
	resp, _ := c.do("POST", "/login", formType, strings.NewReader("username=alice&password=s3cret"), 303)
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "; Secure") {
		t.Fatalf("with --cookie-secure the session cookie is %q, want Secure", sc)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("roam node after cancel: %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("roam node did not return within 15s of its context being cancelled")
	}
}

func TestNodeRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"node", "--listen", "127.0.0.1:0"}
	for _, tt := range []struct {
		name string
		args []string
		want string
		is   error
	}{
		{"missing id", []string{"node", "--listen", "127.0.0.1:0"}, `"id" not set`, nil},
		{"invalid id", append(base, "--id", "n 1"), "--id", nil},
		{"log format", append(base, "--id", "n1", "--log-format", "xml"), "--log-format", nil},
		{"log level", append(base, "--id", "n1", "--log-level", "loud"), "--log-level", nil},
		{"listen without port", []string{"node", "--id", "n1", "--listen", "127.0.0.1"}, "--listen", nil},
		{"unknown store", append(base, "--id", "n1", "--store", "floppy://a"), "open store", storespec.ErrUnknownSpec},
		{"memory with options", append(base, "--id", "n1", "--store", "memory:x"), "memory takes no options", nil},
		{"missing secret file", append(base, "--id", "n1", "--cluster-secret-file", filepath.Join(dir, "nope")), "--cluster-secret-file", os.ErrNotExist},
		{"empty secret file", append(base, "--id", "n1", "--cluster-secret-file", empty), "is empty", nil},
		{"shutdown timeout", append(base, "--id", "n1", "--shutdown-timeout", "0s"), "--shutdown-timeout", nil},
		{"positional argument", append(base, "--id", "n1", "extra"), "unknown command", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out syncBuffer
			err := runRoam(ctx, &out, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("roam %s: error %v, want one mentioning %q", strings.Join(tt.args, " "), err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("roam %s: error %v does not wrap %v", strings.Join(tt.args, " "), err, tt.is)
			}
			if strings.Contains(out.String(), "listening") {
				t.Fatalf("a node with bad flags reported ready: %q", out.String())
			}
		})
	}
}

func TestClusterSecretSources(t *testing.T) {
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(clusterSecretEnv, "from-env")
	if got, err := clusterSecret(file); err != nil || string(got) != "from-file" {
		t.Fatalf("clusterSecret(file) = %q, %v; want the file's content without its newline", got, err)
	}
	if got, err := clusterSecret(""); err != nil || string(got) != "from-env" {
		t.Fatalf("clusterSecret(\"\") = %q, %v; want $%s", got, err, clusterSecretEnv)
	}
	t.Setenv(clusterSecretEnv, "")
	if got, err := clusterSecret(""); err != nil || len(got) != 0 {
		t.Fatalf("clusterSecret with neither = %q, %v; want empty (no authentication)", got, err)
	}
}

func TestDefaultClusterBindFollowsListenHost(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:9001": "127.0.0.1:7946",
		":9001":          ":7946",
		"[::1]:9001":     "[::1]:7946",
		"localhost:0":    "localhost:7946",
	} {
		if got, err := defaultClusterBind(listen); err != nil || got != want {
			t.Errorf("defaultClusterBind(%q) = %q, %v; want %q", listen, got, err, want)
		}
	}
	if _, err := defaultClusterBind("9001"); err == nil {
		t.Error("defaultClusterBind(\"9001\") succeeded; want an error naming --listen")
	}
}
