// Package dashboard is the web page of `roam demo`, served on the
// balancer's admin listener: the nodes with their state, the request rate
// each one serves, the sessions each one holds, buttons to kill, start and
// add nodes, and the current strategy with what it trades.
//
// The page is plain HTML, CSS and a little JavaScript, embedded in the
// binary: nothing is fetched from the internet. It renders on the server,
// so it is readable (and its buttons work) without JavaScript; with
// JavaScript it updates live from a server-sent event stream.
//
// The dashboard knows nothing of the balancer or the launcher: the program
// that serves it reports the nodes through Config.Nodes and acts on them
// through Config.Control. It reads each node's /metrics over HTTP itself,
// like any client, for the sessions it holds.
package dashboard

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Errors a Control returns (wrapped) so the dashboard can answer with the
// right status code.
var (
	// ErrUnknownNode: no node has that id (404).
	ErrUnknownNode = errors.New("dashboard: unknown node")
	// ErrConflict: the node is not in a state for the action, such as
	// killing a node that is already down (409).
	ErrConflict = errors.New("dashboard: node cannot do that now")
)

// DefaultInterval is how often the dashboard samples the nodes when
// Config.Interval is zero.
const DefaultInterval = time.Second

// Where sessions live, as Strategy.Holds says (the values of
// launch.Strategy.Holds).
const (
	HeldByNode    = "node"    // each node in its own memory
	HeldByCluster = "cluster" // replicated among the nodes, with roles
	HeldByServer  = "server"  // in an external server
)

// Strategy is the strategy the page explains.
type Strategy struct {
	Name    string `json:"name"`
	Store   string `json:"store"`  // the store SPEC kind, without secrets
	Policy  string `json:"policy"` // the balancer policy
	Holds   string `json:"holds"`  // HeldByNode, HeldByCluster or HeldByServer
	Server  string `json:"server,omitempty"`
	Summary string `json:"summary"`
	Trade   string `json:"trade"` // one paragraph: what it buys, what it costs
}

// Node is one node as the serving program reports it.
type Node struct {
	ID string `json:"id"`
	// URL is the node's own base URL; the dashboard reads URL/metrics.
	URL string `json:"url"`
	PID int    `json:"pid,omitempty"`
	// State is the balancer's view: up, down or draining.
	State string `json:"state"`
	// Process is the launcher's view: starting, running, killed, stopped
	// or exited; "" when the program does not launch nodes.
	Process string `json:"process,omitempty"`
	// Exit says how the last process ended, when it has.
	Exit string `json:"exit,omitempty"`
	// Requests the balancer has had answered by this node, and in flight.
	Requests uint64 `json:"requests"`
	Active   int64  `json:"active"`
	Failures uint64 `json:"failures"`
}

// Control acts on nodes for the page's buttons. Each method returns when
// the action is done (a started node is ready); errors wrap
// ErrUnknownNode or ErrConflict where they apply.
type Control interface {
	Kill(ctx context.Context, id string) error
	Start(ctx context.Context, id string) error
	// Add starts one more node and returns its id.
	Add(ctx context.Context) (string, error)
}

// Config configures a Dashboard. Nodes is required.
type Config struct {
	Strategy Strategy
	// AppURL is the balancer's traffic URL, linked from the page.
	AppURL string
	// Nodes reports the nodes, in the order to show them. It is called
	// once per Interval and must be quick.
	Nodes func() []Node
	// Control, when set, adds the kill, start and add buttons and their
	// routes (POST /api/nodes/{id}/kill, /api/nodes/{id}/start,
	// /api/nodes). Without it the dashboard is read-only.
	Control Control
	// Interval between samples; DefaultInterval when zero.
	Interval time.Duration
	// Client reads the nodes' /metrics; one with a one-second timeout
	// when nil.
	Client *http.Client
	// Logger receives failures of the control actions; slog.Default()
	// when nil.
	Logger *slog.Logger
}

//go:embed static
var staticFiles embed.FS

// Dashboard serves the page, its state as JSON and as an event stream.
// Create it with New, register its routes with Register, and run its
// sampler with Run.
type Dashboard struct {
	cfg    Config
	log    *slog.Logger
	page   *template.Template
	static http.Handler

	sampler *sampler
	hub     *hub

	mu    sync.Mutex
	state State
}

// New returns a dashboard for cfg. It fails when cfg.Nodes is nil.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Nodes == nil {
		return nil, errors.New("dashboard: Config.Nodes is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	page, err := template.New("index.html").Funcs(templateFuncs).ParseFS(staticFiles, "static/index.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: page template: %w", err)
	}
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		return nil, err
	}
	d := &Dashboard{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "dashboard"),
		page:    page,
		static:  http.StripPrefix("/static/", http.FileServerFS(sub)),
		sampler: newSampler(cfg.Client, cfg.Strategy.Holds, cfg.Strategy.Server),
		hub:     newHub(),
	}
	d.state = d.sampler.sample(context.Background(), cfg.Nodes(), time.Now())
	d.decorate(&d.state)
	return d, nil
}

// Register adds the dashboard's routes to mux:
//
//	GET  /                       the page
//	GET  /static/…               its stylesheet and script
//	GET  /api/dashboard          the current State as JSON
//	GET  /api/dashboard/events   a server-sent event stream of States
//
// and, when Config.Control is set:
//
//	POST /api/nodes/{id}/kill    crash the node (SIGKILL)
//	POST /api/nodes/{id}/start   start a killed or exited node again
//	POST /api/nodes              add a node
//
// POST routes refuse cross-origin browser requests (403), so a web page
// elsewhere cannot kill nodes through the visitor's browser. They answer
// JSON, or 303 back to the page for a plain HTML form. That check compares
// Origin with Host, which a DNS-rebinding page makes agree: serve the
// listener behind adminhost.RequireLocalHost too.
func (d *Dashboard) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", d.servePage)
	mux.Handle("GET /static/", d.static)
	mux.HandleFunc("GET /api/dashboard", d.serveState)
	mux.HandleFunc("GET /api/dashboard/events", d.serveEvents)
	if d.cfg.Control == nil {
		return
	}
	cop := http.NewCrossOriginProtection()
	mux.Handle("POST /api/nodes/{id}/kill", cop.Handler(http.HandlerFunc(d.serveKill)))
	mux.Handle("POST /api/nodes/{id}/start", cop.Handler(http.HandlerFunc(d.serveStart)))
	mux.Handle("POST /api/nodes", cop.Handler(http.HandlerFunc(d.serveAdd)))
}

// Run samples the nodes every Interval and pushes the new state to every
// event stream, until ctx ends; then it ends the streams and returns nil.
func (d *Dashboard) Run(ctx context.Context) error {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	defer d.hub.close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			d.refresh(ctx)
		case <-d.hub.poke:
			d.refresh(ctx)
		}
	}
}

// Snapshot returns the latest state.
func (d *Dashboard) Snapshot() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

// refresh takes a sample and publishes it.
func (d *Dashboard) refresh(ctx context.Context) {
	st := d.sampler.sample(ctx, d.cfg.Nodes(), time.Now())
	d.decorate(&st)
	d.mu.Lock()
	d.state = st
	d.mu.Unlock()
	d.hub.publish(st)
}

func (d *Dashboard) decorate(st *State) {
	st.Strategy = d.cfg.Strategy
	st.AppURL = d.cfg.AppURL
	st.Control = d.cfg.Control != nil
	st.Interval = d.cfg.Interval.Seconds()
}
