package launch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// ErrServerMissing is returned (wrapped) by Start when the strategy needs
// an external server, Options.StoreURL is empty, and the server's binary
// is not installed. The message names the Debian package and the flag.
var ErrServerMissing = errors.New("launch: store server not installed")

// serverKind describes one kind of external store server.
type serverKind struct {
	binary  string   // what must be installed for Start to run one itself
	pkg     string   // the Debian package that provides it
	schemes []string // accepted StoreURL schemes
	example string   // a StoreURL to show in messages
}

var serverKinds = map[string]serverKind{
	"redis":          {binary: "redis-server", pkg: "redis-server", schemes: []string{"redis", "rediss"}, example: "redis://127.0.0.1:6379"},
	"redis-sentinel": {binary: "redis-server", pkg: "redis-server", schemes: []string{"redis-sentinel"}, example: "redis-sentinel://127.0.0.1:26379/mymaster"},
	"redis-cluster":  {binary: "redis-server", pkg: "redis-server", schemes: []string{"redis-cluster"}, example: "redis-cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"},
	"memcached":      {binary: "memcached", pkg: "memcached", schemes: []string{"memcached"}, example: "memcached://127.0.0.1:11211"},
	"postgres":       {binary: "postgres", pkg: "postgresql", schemes: []string{"postgres", "postgresql"}, example: "postgres://roam@127.0.0.1:5432/roam?sslmode=disable"},
	"mysql":          {binary: "mariadbd", pkg: "mariadb-server", schemes: []string{"mysql"}, example: "mysql://roam:secret@127.0.0.1:3306/roam"},
}

// checkStoreURL rejects a StoreURL whose scheme does not fit the strategy.
func checkStoreURL(st Strategy, url string) error {
	k := serverKinds[st.Server]
	scheme, _, ok := strings.Cut(url, "://")
	if ok {
		for _, s := range k.schemes {
			if scheme == s {
				return nil
			}
		}
	}
	return fmt.Errorf("launch: strategy %s wants a store URL like %s, not %q", st.Name, k.example, redact(url))
}

// server is an external store server Start runs for the nodes.
type server struct {
	spec string // what the nodes' --store gets
	stop func(ctx context.Context) error
}

// startServer runs the server st needs and returns the SPEC pointing at
// it. It fails with an error wrapping ErrServerMissing, naming the package
// to install and the flag to pass instead, when the binary is missing.
func startServer(ctx context.Context, st Strategy, opts Options, log *slog.Logger) (*server, error) {
	k, ok := serverKinds[st.Server]
	if !ok {
		return nil, fmt.Errorf("launch: strategy %s: no server kind %q", st.Name, st.Server)
	}
	start := serverStarters[st.Server]
	if start == nil {
		return nil, fmt.Errorf("%w: strategy %s needs a %s server and roam cannot start one itself yet: pass --store-url %s",
			ErrServerMissing, st.Name, st.Server, k.example)
	}
	return start(ctx, opts, log)
}

// serverStarters start each kind of server; a kind without one needs
// Options.StoreURL.
var serverStarters = map[string]func(context.Context, Options, *slog.Logger) (*server, error){}
