// Package storespec turns a store SPEC string, as given to `roam node
// --store`, into an open session.Store. It is the one place that imports
// every store; each store's opener lives in a file of its own.
//
// Accepted forms:
//
//	memory
//	redis://[user:pass@]host:port[/db][?prefix=roam:&wait_replicas=1&wait_timeout=100ms]
//	rediss://…                                  (TLS)
//	redis-sentinel://host:port,host:port/master[?…]
//	redis-cluster://host:port,host:port[?…]
//	memcached://host:port[,host:port…]
//	postgres://user@host:port/db?sslmode=disable (also postgresql://)
//	mysql://user:pass@host:port/db
//	sqlite:///path/to/file.db   or   sqlite::memory:
//	cluster:backup[?backups=1&sync=true]   cluster:all[?sync=true]
package storespec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/roamsession/roam/session"
)

// ErrUnknownSpec is returned by Open for a SPEC whose kind roam does not know.
var ErrUnknownSpec = errors.New("unknown store spec")

// Env is what a store may need from the node that opens it.
type Env struct {
	NodeID     string // the node's --id
	ListenAddr string // the node's HTTP listen address

	// Cluster settings, used only by cluster: specs.
	ClusterBind      string   // gossip/replication bind address; default listen host:7946
	ClusterAdvertise string   // address peers should use; default ClusterBind
	Join             []string // any live members' cluster addresses
	ClusterSecret    []byte   // shared secret; empty means no authentication

	Logger   *slog.Logger          // default slog.Default()
	Registry prometheus.Registerer // where stores register metrics; nil: none
}

// Opened is an open store plus what the node needs to run it.
type Opened struct {
	Store session.Store
	Kind  string // "memory", "redis", "cluster", …: for logs and metrics labels

	// Close releases the store (connections, goroutines, membership). It is
	// never nil.
	Close func(ctx context.Context) error

	// Ready reports whether the store can serve (a cluster node that has
	// not finished its state transfer is not ready). Nil means always.
	Ready func() error
}

// Open parses spec and opens the store it names. It returns an error that
// quotes the spec's kind (never its password) when the spec is malformed or
// the store cannot be reached.
func Open(ctx context.Context, spec string, env Env) (*Opened, error) {
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	kind, rest, _ := strings.Cut(spec, ":")
	var (
		o   *Opened
		err error
	)
	switch kind {
	case "memory":
		if rest != "" {
			return nil, fmt.Errorf("store spec %q: memory takes no options", kind)
		}
		o, err = openMemory(ctx, env)
	case "redis", "rediss", "redis-sentinel", "redis-cluster":
		o, err = openRedis(ctx, spec, env)
	case "memcached":
		o, err = openMemcached(ctx, spec, env)
	case "postgres", "postgresql", "mysql", "sqlite":
		o, err = openSQL(ctx, spec, env)
	case "cluster":
		o, err = openCluster(ctx, rest, env)
	default:
		return nil, fmt.Errorf("store spec %q: %w (want memory, redis://, redis-sentinel://, redis-cluster://, memcached://, postgres://, mysql://, sqlite://, cluster:backup or cluster:all)", Redact(spec), ErrUnknownSpec)
	}
	if err != nil {
		return nil, err
	}
	if o.Kind == "" {
		o.Kind = kind
	}
	if o.Close == nil {
		o.Close = func(context.Context) error { return nil }
	}
	return o, nil
}

// Redact returns spec with any password replaced by "xxxxx", for logs and
// error messages.
func Redact(spec string) string {
	scheme, rest, ok := strings.Cut(spec, "://")
	if !ok {
		// A mistyped spec ("redis:/u:pw@h", "//u:pw@h") has no "://" but may
		// still hold a password, and its error message quotes it.
		if u, err := url.Parse(spec); err == nil && u.User != nil {
			if _, hasPass := u.User.Password(); hasPass {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
				return u.String()
			}
		}
		return spec
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return spec
	}
	userinfo := rest[:at]
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		return scheme + "://" + user + ":xxxxx@" + rest[at+1:]
	}
	return spec
}
