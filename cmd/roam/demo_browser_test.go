package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// updateScreenshots copies the screenshots the browser test takes into
// docs/img, for the README:
//
//	go test ./cmd/roam -run TestBrowser -update-screenshots
var updateScreenshots = flag.Bool("update-screenshots", false, "copy the browser test's screenshots into docs/img")

// Viewport of every tab: wide enough for three node cards side by side,
// small enough for light PNGs.
const viewportW, viewportH = 1120, 760

// requireChromium returns the path of Debian's chromium. When it is
// missing the test is skipped, or fails under CI=true, naming the package.
func requireChromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := "chromium NOT FOUND: install the Debian package \"chromium\" (apt-get install -y chromium)"
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("%s; CI=true, so a missing browser is a failure, not a skip", msg)
	}
	t.Skipf("!!! SKIPPING %s: %s", t.Name(), msg)
	return ""
}

// artifactsDir is where screenshots and the browser's log go:
// $ROAM_ARTIFACTS/browser when set (CI keeps it), else a test temp dir.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if root := os.Getenv("ROAM_ARTIFACTS"); root != "" {
		dir = filepath.Join(root, "browser")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("browser test artifacts in %s", dir)
	return dir
}

// newBrowser starts one headless chromium for the whole test and returns a
// context for it; it is closed, with every process it started, at cleanup.
func newBrowser(t *testing.T, chromium, artifacts string) context.Context {
	t.Helper()
	logf, err := os.Create(filepath.Join(artifacts, "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(viewportW, viewportH),
		chromedp.CombinedOutput(logf),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// newTab opens a tab in a browser context of its own (its own cookies), so
// that no session leaks from one strategy's run into the next.
func newTab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	ctx, cancelTime := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTime(); cancel() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(viewportW, viewportH)); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// appPage is what the demo app's page shows.
type appPage struct {
	Page    string `json:"page"` // "profile", "login" or "other"
	Node    string `json:"node"` // the node that served it
	User    string `json:"user"`
	Counter int    `json:"counter"`
	Moved   string `json:"moved"` // the "your session moved" notice, if any
}

const readAppPage = `(() => {
  const q = (s) => document.querySelector(s);
  const text = (s) => (q(s) ? q(s).textContent.replace(/\s+/g, " ").trim() : "");
  const counter = q(".counter");
  return {
    page: counter ? "profile" : (q("#username") ? "login" : "other"),
    node: text(".bar .node strong"),
    user: counter ? text("h1").replace(/^Hello, /, "") : "",
    counter: counter ? parseInt(counter.textContent, 10) : -1,
    moved: text(".moved"),
  };
})()`

func readPage(t *testing.T, tab context.Context) appPage {
	t.Helper()
	p, err := chromedp.Run(tab, chromedp.Evaluate[appPage](readAppPage))
	if err != nil {
		t.Fatalf("read the app page: %v", err)
	}
	return p
}

func reload(t *testing.T, tab context.Context) appPage {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.Reload()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	return readPage(t, tab)
}

// submit clicks the button of the form posting to action and waits for
// the page it leads to.
func submit(t *testing.T, tab context.Context, action string) appPage {
	t.Helper()
	click := chromedp.Click(chromedp.CSS(`form[action="` + action + `"] button`))
	if _, err := chromedp.Run(tab, chromedp.WaitEvent(page.LoadEventFired, nil, click)); err != nil {
		t.Fatalf("submit %s: %v", action, err)
	}
	return readPage(t, tab)
}

func logIn(t *testing.T, tab context.Context, app, name string) appPage {
	t.Helper()
	if err := chromedp.Do(tab,
		chromedp.Navigate(app),
		chromedp.SendKeys(chromedp.ID("username"), name),
		chromedp.SendKeys(chromedp.ID("password"), "roam"),
	); err != nil {
		t.Fatalf("open the login form at %s: %v", app, err)
	}
	return submit(t, tab, "/login")
}

func screenshot(t *testing.T, tab context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// killFromDashboard clicks the node's kill button and waits until the page
// shows it killed, and the balancer's health checks see it down.
func killFromDashboard(t *testing.T, dash context.Context, admin, id string) {
	t.Helper()
	card := `article[data-id="` + id + `"]`
	if err := chromedp.Do(dash,
		chromedp.Navigate(admin),
		// The event stream is connected: the page is live.
		chromedp.Poll[chromedp.Void](`document.querySelector("#live").dataset.state === "live"`, chromedp.WithPollingTimeout(10*time.Second)),
		chromedp.Click(chromedp.CSS(card+" button.kill")),
		chromedp.Poll[chromedp.Void](fmt.Sprintf(`(() => { const c = document.querySelector(%q);
			return c.classList.contains("dead") && c.querySelector(".proc").textContent === "killed" &&
			       c.querySelector(".lbstate").textContent === "down"; })()`, card),
			chromedp.WithPollingTimeout(10*time.Second)),
	); err != nil {
		t.Fatalf("kill %s from the dashboard: %v", id, err)
	}
}

// replicatedStory is the story under backup and all: the session survives
// the death of the node that served it, counter and all, and the page says
// it moved.
func replicatedStory(t *testing.T, d *demo, app, dash context.Context, shot func(context.Context, string)) {
	p := logIn(t, app, d.app, "alice")
	if p.Page != "profile" || p.User != "alice" {
		t.Fatalf("after logging in: %+v, want alice's profile", p)
	}
	p = submit(t, app, "/counter")
	p = submit(t, app, "/counter")
	if p.Counter != 2 {
		t.Fatalf("after +1 twice: %+v, want counter 2", p)
	}
	served := p.Node
	shot(app, "app-before-kill.png")
	killFromDashboard(t, dash, d.admin, served)
	p = reload(t, app)
	if p.Page != "profile" || p.User != "alice" || p.Counter != 2 || p.Node == served || p.Node == "" {
		t.Fatalf("after killing %s and reloading: %+v; want alice's profile, counter 2, from another node", served, p)
	}
	if want := "your previous server was " + served; !strings.Contains(p.Moved, want) {
		t.Fatalf("moved notice %q does not say %q", p.Moved, want)
	}
	shot(app, "app-after-kill.png")
	// The dashboard once the survivors have settled who holds what.
	if err := chromedp.Do(dash, chromedp.Poll[chromedp.Void](
		`[...document.querySelectorAll("article.alive .sessions")].some((e) => /[1-9][0-9]* primary/.test(e.textContent))`,
		chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Fatalf("no live node shows a primary session on the dashboard: %v", err)
	}
	shot(dash, "dashboard-after-kill.png")
	for range 4 {
		if p = reload(t, app); p.Page != "profile" || p.Counter != 2 {
			t.Fatalf("reloading after the failover: %+v, want alice's profile with counter 2", p)
		}
	}
}

// TestBrowserKillTheServingNode is the README's story in a real browser:
// log in through the balancer, see which node served the page, kill that
// node from the dashboard, reload, and see whether the login survived.
func TestBrowserKillTheServingNode(t *testing.T) {
	chromium := requireChromium(t)
	artifacts := artifactsDir(t)
	browser := newBrowser(t, chromium, artifacts)
	const nodes = 3

	for _, tc := range []struct {
		strategy string
		story    func(t *testing.T, d *demo, app, dash context.Context, shot func(context.Context, string))
	}{
		{"backup", replicatedStory},
		{"all", replicatedStory},
		{"sticky", func(t *testing.T, d *demo, app, dash context.Context, shot func(context.Context, string)) {
			p := logIn(t, app, d.app, "alice")
			if p.Page != "profile" || p.User != "alice" {
				t.Fatalf("after logging in: %+v, want alice's profile (the balancer pins the browser)", p)
			}
			p = submit(t, app, "/counter")
			p = submit(t, app, "/counter")
			if p.Counter != 2 {
				t.Fatalf("after +1 twice: %+v, want counter 2", p)
			}
			pinned := p.Node
			shot(app, "app-before-kill.png")
			killFromDashboard(t, dash, d.admin, pinned)
			shot(dash, "dashboard-after-kill.png")
			p = reload(t, app)
			if p.Page != "login" || p.Node == pinned || p.Node == "" {
				t.Fatalf("after killing the pinned node %s and reloading: %+v; want the login form from another node", pinned, p)
			}
			shot(app, "app-after-kill.png")
		}},
		{"none", func(t *testing.T, d *demo, app, dash context.Context, shot func(context.Context, string)) {
			p := logIn(t, app, d.app, "bob")
			// Round robin: the login lives on one node; reload until the
			// balancer comes back to it.
			for i := 0; p.Page != "profile" && i < 2*nodes; i++ {
				p = reload(t, app)
			}
			if p.Page != "profile" || p.User != "bob" {
				t.Fatalf("never saw bob's profile in %d reloads: %+v", 2*nodes, p)
			}
			home := p.Node
			shot(app, "app-before-kill.png")
			killFromDashboard(t, dash, d.admin, home)
			shot(dash, "dashboard-after-kill.png")
			for range 2 * nodes {
				if p = reload(t, app); p.Page != "login" || p.Node == home {
					t.Fatalf("after killing %s, the only node with the session: %+v; want the login form from another node", home, p)
				}
			}
			shot(app, "app-after-kill.png")
		}},
	} {
		t.Run(tc.strategy, func(t *testing.T) {
			d := startDemo(t, "--strategy", tc.strategy, "--nodes", strconv.Itoa(nodes))
			dir := filepath.Join(artifacts, tc.strategy)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			shot := func(tab context.Context, name string) { screenshot(t, tab, dir, name) }
			tc.story(t, d, newTab(t, browser), newTab(t, browser), shot)
			if *updateScreenshots && tc.strategy == "backup" {
				if err := os.MkdirAll(filepath.Join("..", "..", "docs", "img"), 0o755); err != nil {
					t.Fatal(err)
				}
				for src, dst := range map[string]string{"dashboard-after-kill.png": "demo-dashboard.png", "app-after-kill.png": "demo-app.png"} {
					b, err := os.ReadFile(filepath.Join(dir, src))
					if err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join("..", "..", "docs", "img", dst), b, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
		})
	}
}
