package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/roamsession/roam/demoapp"
	"github.com/roamsession/roam/internal/storespec"
	"github.com/roamsession/roam/session"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, newNodeCmd) }

// clusterSecretEnv is the environment variable read for the cluster secret
// when --cluster-secret-file is not given.
const clusterSecretEnv = "ROAM_CLUSTER_SECRET"

// defaultClusterPort is the gossip/replication port used with the listen
// host when --cluster-bind is not given (memberlist's customary port).
const defaultClusterPort = "7946"

// HTTP server limits. There is no ReadTimeout or WriteTimeout;
// ReadHeaderTimeout stops slow-header clients.
const (
	nodeReadHeaderTimeout = 10 * time.Second
	nodeIdleTimeout       = 120 * time.Second // above a balancer's usual 90s, so the balancer closes idle connections first
	nodeMaxHeaderBytes    = 64 << 10
)

// nodeConfig is the parsed command line of `roam node`.
type nodeConfig struct {
	id               string
	listen           string
	store            string
	clusterBind      string
	clusterAdvertise string
	join             []string
	secretFile       string
	cookieSecure     bool
	demoPassword     string
	logFormat        string
	logLevel         string
	shutdownTimeout  time.Duration
}

func newNodeCmd() *cobra.Command {
	var c nodeConfig
	cmd := &cobra.Command{
		Use:   "node --id ID --listen ADDR --store SPEC",
		Short: "Run one demo app server",
		Long: `Run one server of the bundled demo login app, keeping its sessions in the
store SPEC names (memory, redis://…, memcached://…, postgres://…, mysql://…,
sqlite://…, cluster:backup, cluster:all).

The node serves plain HTTP (TLS belongs at the balancer), so its session cookie
omits Secure unless --cookie-secure is given. With a cluster: store,
--cluster-bind is the gossip/replication address (default: the listen host,
port 7946), --join lists live members' cluster addresses, and the shared secret
comes from --cluster-secret-file or $ROAM_CLUSTER_SECRET.

When the node is ready it prints one line to stdout:

  roam node ID listening on http://ADDR store=KIND

On SIGTERM or SIGINT it stops accepting connections, lets in-flight requests
finish (up to --shutdown-timeout), closes the store (a cluster node hands its
sessions to its peers there) and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runNode(cmd.Context(), c, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.id, "id", "", "node id, 1–64 characters of A-Z a-z 0-9 _ . - (required)")
	f.StringVar(&c.listen, "listen", "127.0.0.1:9001", "HTTP listen address; port 0 picks a free port")
	f.StringVar(&c.store, "store", "memory", "session store SPEC")
	f.StringVar(&c.clusterBind, "cluster-bind", "", "cluster gossip/replication bind address (default: listen host, port "+defaultClusterPort+")")
	f.StringVar(&c.clusterAdvertise, "cluster-advertise", "", "cluster address peers should use (default: the bind address)")
	f.StringSliceVar(&c.join, "join", nil, "cluster addresses of live members to join, comma-separated")
	f.StringVar(&c.secretFile, "cluster-secret-file", "", "file holding the cluster's shared secret (default: $"+clusterSecretEnv+")")
	f.BoolVar(&c.cookieSecure, "cookie-secure", false, "mark the session cookie Secure (when clients reach the node over HTTPS)")
	f.StringVar(&c.demoPassword, "demo-password", demoapp.DefaultPassword, "the password every demo user logs in with")
	f.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight requests, and then the store, get to finish on shutdown")
	_ = cmd.MarkFlagRequired("id")
	return cmd
}

// runNode serves the demo app until ctx is cancelled, then shuts down
// gracefully. It returns an error when a flag is invalid, the listener or
// the store cannot be opened, the server fails, or the store fails to close.
func runNode(ctx context.Context, c nodeConfig, stdout, stderr io.Writer) error {
	logger, err := newLogger(stderr, c.logFormat, c.logLevel)
	if err != nil {
		return err
	}
	if err := demoapp.CheckNodeID(c.id); err != nil {
		return fmt.Errorf("--id: %w", err)
	}
	if c.shutdownTimeout <= 0 {
		return fmt.Errorf("--shutdown-timeout %v must be positive", c.shutdownTimeout)
	}
	if c.clusterBind == "" {
		if c.clusterBind, err = defaultClusterBind(c.listen); err != nil {
			return err
		}
	}
	secret, err := clusterSecret(c.secretFile)
	if err != nil {
		return err
	}
	logger = logger.With("node", c.id)

	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close() // a no-op after Shutdown; closes it on early returns
	addr := ln.Addr().String()

	reg := prometheus.NewRegistry()
	opened, err := storespec.Open(ctx, c.store, storespec.Env{
		NodeID:           c.id,
		ListenAddr:       addr,
		ClusterBind:      c.clusterBind,
		ClusterAdvertise: c.clusterAdvertise,
		Join:             c.join,
		ClusterSecret:    secret,
		Logger:           logger.With("component", "store"),
		Registry:         reg,
	})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	closeStore := func() error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.shutdownTimeout)
		defer cancel()
		if err := opened.Close(cctx); err != nil {
			return fmt.Errorf("close %s store: %w", opened.Kind, err)
		}
		return nil
	}

	handler, err := nodeHandler(c, logger, reg, opened)
	if err != nil {
		return errors.Join(err, closeStore())
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: nodeReadHeaderTimeout,
		IdleTimeout:       nodeIdleTimeout,
		MaxHeaderBytes:    nodeMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	logger.Info("node ready", "addr", addr, "store", opened.Kind)
	fmt.Fprintf(stdout, "roam node %s listening on http://%s store=%s\n", c.id, addr, opened.Kind)

	select {
	case err := <-served:
		// Serve only returns early on a listener failure.
		return errors.Join(fmt.Errorf("serve: %w", err), closeStore())
	case <-ctx.Done():
	}

	logger.Info("shutting down", "timeout", c.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// In-flight requests outlived the timeout: cut them off rather than
		// hang, and still close the store so a cluster node hands off.
		logger.Warn("in-flight requests did not finish in time; closing their connections", "error", err)
		_ = srv.Close()
	}
	<-served
	if err := closeStore(); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// nodeHandler builds the node's HTTP handler: the demo app over the opened
// store. Stores that talk to peers (the cluster store) do so on listeners
// of their own, never on this one.
func nodeHandler(c nodeConfig, logger *slog.Logger, reg *prometheus.Registry, opened *storespec.Opened) (http.Handler, error) {
	mgr, err := session.NewManager(opened.Store, session.Options{
		Cookie: session.CookieOptions{Insecure: !c.cookieSecure},
		Logger: logger.With("component", "session"),
	})
	if err != nil {
		return nil, fmt.Errorf("session manager: %w", err)
	}
	app, err := demoapp.New(demoapp.Config{
		NodeID:   c.id,
		Manager:  mgr,
		Password: c.demoPassword,
		Logger:   logger.With("component", "app"),
		Registry: reg,
		Ready:    opened.Ready,
	})
	if err != nil {
		return nil, err
	}
	return app, nil
}

// defaultClusterBind is the cluster address for a node listening on
// listen: the same host, port 7946. It returns an error naming --listen when
// listen is not host:port.
func defaultClusterBind(listen string) (string, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen %q: %w", listen, err)
	}
	return net.JoinHostPort(host, defaultClusterPort), nil
}

// clusterSecret reads the shared secret from file, or from the environment
// when file is "". Surrounding whitespace (a trailing newline) is not part
// of the secret. It returns an error when the file cannot be read or holds
// nothing; no secret at all is allowed, and means no authentication.
func clusterSecret(file string) ([]byte, error) {
	if file == "" {
		return []byte(strings.TrimSpace(os.Getenv(clusterSecretEnv))), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--cluster-secret-file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("--cluster-secret-file %s is empty", file)
	}
	return b, nil
}

// newLogger returns a slog logger writing to w in format (text or json) at
// level (debug, info, warn, error), or an error naming the bad flag.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}
