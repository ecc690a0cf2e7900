package demoapp

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/roamsession/roam/session"
)

// DefaultPassword is the demo password when Config.Password is empty.
const DefaultPassword = "roam"

// NodeHeader is the response header that names the node that answered.
const NodeHeader = "X-Roam-Node"

// Session attribute keys. The user is the session's principal.
const (
	keyCounter = "counter"
	keyNode    = "node"
)

// Config configures an App. NodeID and Manager are required; every other
// field has a usable zero value.
type Config struct {
	// NodeID names this node in pages, JSON answers and the X-Roam-Node
	// header: 1–64 characters of [A-Za-z0-9_.-].
	NodeID string

	// Manager loads and saves the sessions. Its cookie settings (Secure or
	// not) are the caller's choice.
	Manager *session.Manager

	// Password is the one password every user logs in with. Default
	// DefaultPassword.
	Password string

	// Logger receives logins and failures. Default slog.Default(). The App
	// adds no node attribute of its own: give it a logger that has one.
	Logger *slog.Logger

	// Registry is where the App registers its metrics; GET /metrics serves
	// what it gathers, so it must also be a prometheus.Gatherer (a
	// *prometheus.Registry is both). Default: a private registry of the
	// App's own. The Go and process collectors are registered too, unless
	// the registry already has them.
	Registry prometheus.Registerer

	// Ready reports whether the node can serve sessions, for GET /readyz.
	// Nil means always ready. Its error is logged, never sent: /readyz
	// answers a fixed "not ready".
	Ready func() error
}

// App is the demo application. It is an http.Handler serving the whole
// HTTP contract described in the package documentation, and is safe for
// concurrent use.
type App struct {
	node     string
	mgr      *session.Manager
	password [32]byte // SHA-256 of the demo password, for a length-blind compare
	showHint bool     // the password is the default, so the login page may say so
	log      *slog.Logger
	ready    func() error
	pages    *pages
	metrics  *metrics
	cop      *http.CrossOriginProtection
	handler  http.Handler
}

// New returns an App for cfg. It returns an error naming the field when
// NodeID or Manager is missing or invalid, or when the metrics cannot be
// registered (for example because Registry already holds them).
func New(cfg Config) (*App, error) {
	if err := CheckNodeID(cfg.NodeID); err != nil {
		return nil, fmt.Errorf("demoapp: Config.NodeID: %w", err)
	}
	if cfg.Manager == nil {
		return nil, errors.New("demoapp: Config.Manager is nil")
	}
	if cfg.Password == "" {
		cfg.Password = DefaultPassword
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var gatherer prometheus.Gatherer
	if cfg.Registry == nil {
		reg := prometheus.NewRegistry()
		cfg.Registry, gatherer = reg, reg
	} else {
		g, ok := cfg.Registry.(prometheus.Gatherer)
		if !ok {
			return nil, errors.New("demoapp: Config.Registry must also be a prometheus.Gatherer (use a *prometheus.Registry)")
		}
		gatherer = g
	}
	pg, err := parsePages()
	if err != nil {
		return nil, fmt.Errorf("demoapp: %w", err)
	}
	met, err := newMetrics(cfg.Registry, cfg.NodeID, cfg.Manager)
	if err != nil {
		return nil, fmt.Errorf("demoapp: %w", err)
	}
	a := &App{
		node:     cfg.NodeID,
		mgr:      cfg.Manager,
		password: hashPassword(cfg.Password),
		showHint: cfg.Password == DefaultPassword,
		log:      cfg.Logger,
		ready:    cfg.Ready,
		pages:    pg,
		metrics:  met,
		cop:      http.NewCrossOriginProtection(),
	}
	a.cop.SetDenyHandler(http.HandlerFunc(a.crossOrigin))

	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, fmt.Errorf("demoapp: %w", err)
	}
	mux := http.NewServeMux()
	// Routes that use the session go through the Manager's middleware;
	// POSTs pass the cross-origin check first, so a rejected request costs
	// no store I/O.
	withSession := a.mgr.Middleware
	post := func(h http.HandlerFunc) http.Handler { return a.cop.Handler(withSession(h)) }
	mux.Handle("GET /{$}", withSession(http.HandlerFunc(a.home)))
	mux.Handle("POST /login", post(a.login))
	mux.Handle("POST /logout", post(a.logout))
	mux.Handle("POST /counter", post(a.counterForm))
	mux.Handle("GET /api/me", withSession(http.HandlerFunc(a.me)))
	mux.Handle("POST /api/counter", post(a.counterAPI))
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", met.handler(gatherer))
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticFiles(static)))
	a.handler = met.instrument(mux)
	return a, nil
}

// ServeHTTP serves the demo app's HTTP contract.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// First, so that every answer carries it: 404s, 405s and the session
	// manager's 503s included.
	w.Header().Set(NodeHeader, a.node)
	a.handler.ServeHTTP(w, r)
}

// NodeID returns the node id the App answers with.
func (a *App) NodeID() string { return a.node }

// CheckNodeID returns an error unless id is a valid node id: 1–64
// characters of [A-Za-z0-9_.-], safe in a header, a page and a metric label.
func CheckNodeID(id string) error {
	if !validName(id) {
		return fmt.Errorf("node id %q must be 1–64 characters of A-Z a-z 0-9 _ . -", id)
	}
	return nil
}

// validName reports whether s is 1–64 characters of [A-Za-z0-9_.-], the
// shape of both usernames and node ids.
func validName(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
