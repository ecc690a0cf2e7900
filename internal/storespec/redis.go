package storespec

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roamsession/roam/store/redisstore"
)

// Client defaults for a node opened from a spec. They are shorter than
// go-redis's (5 s dial, 5 s read and write, five dial attempts per
// connection) so that a request to a Redis that is down or hung fails in
// about a second with a 503 instead of hanging the user's page.
const (
	redisDefaultDialTimeout  = 500 * time.Millisecond
	redisDefaultReadTimeout  = time.Second
	redisDefaultWriteTimeout = 500 * time.Millisecond
	redisDefaultTimeout      = 2 * time.Second
)

// redisConfig is a parsed redis spec.
type redisConfig struct {
	kind     string // "redis", "redis-sentinel" or "redis-cluster"
	tls      bool
	addrs    []string
	master   string // Sentinel's master name
	username string
	password string
	db       int

	dialTimeout, readTimeout, writeTimeout time.Duration
	poolSize                               int
	store                                  redisstore.Options
}

// parseRedis parses
//
//	redis://[user:pass@]host:port[/db][?options]
//	rediss://…                                   (TLS, system roots)
//	redis-sentinel://[user:pass@]host:port,host:port/mastername[?options]
//	redis-cluster://[user:pass@]host:port,host:port[?options]
//
// with options prefix, wait_replicas, wait_timeout, timeout (whole call),
// dial_timeout, read_timeout, write_timeout, pool_size, and db (Sentinel
// only; the path holds it for redis://). The user and password, which may
// be percent-encoded, are those of the data servers (for Sentinel, not of
// the sentinels). Errors quote the spec with the password redacted and
// never echo the user info.
func parseRedis(spec string) (*redisConfig, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("store spec %q: "+format, append([]any{Redact(spec)}, args...)...)
	}
	scheme, rest, ok := strings.Cut(spec, "://")
	c := &redisConfig{
		dialTimeout:  redisDefaultDialTimeout,
		readTimeout:  redisDefaultReadTimeout,
		writeTimeout: redisDefaultWriteTimeout,
	}
	c.store.Timeout = redisDefaultTimeout
	switch scheme {
	case "redis", "rediss":
		c.kind, c.tls = "redis", scheme == "rediss"
	case "redis-sentinel", "redis-cluster":
		c.kind = scheme
	default:
		ok = false
	}
	if !ok {
		return nil, fail("want redis://, rediss://, redis-sentinel:// or redis-cluster://")
	}
	// The user info ends at the last "@", as Redact reads it, so that no
	// part of a password (which may hold "?" or "/") reaches a message.
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		user, pass, _ := strings.Cut(rest[:at], ":")
		var err1, err2 error
		c.username, err1 = url.PathUnescape(user)
		c.password, err2 = url.PathUnescape(pass)
		if err1 != nil || err2 != nil {
			return nil, fail("bad percent-encoding in the user or password")
		}
		rest = rest[at+1:]
	}
	rest, query, _ := strings.Cut(rest, "?")
	hosts, path, _ := strings.Cut(rest, "/")
	defaultPort := "6379"
	if c.kind == "redis-sentinel" {
		defaultPort = "26379"
	}
	for _, h := range strings.Split(hosts, ",") {
		addr, err := redisAddr(h, defaultPort)
		if err != nil {
			return nil, fail("%v", err)
		}
		c.addrs = append(c.addrs, addr)
	}
	path = strings.TrimSuffix(path, "/")
	switch c.kind {
	case "redis":
		if len(c.addrs) != 1 {
			return nil, fail("%s:// takes one server; use redis-sentinel:// or redis-cluster:// for several", scheme)
		}
		if path != "" {
			db, err := strconv.Atoi(path)
			if err != nil || db < 0 {
				return nil, fail("database %q: want a number such as /0", path)
			}
			c.db = db
		}
	case "redis-sentinel":
		if path == "" || strings.Contains(path, "/") {
			return nil, fail("want the master's name as the path: redis-sentinel://host:port,host:port/mastername")
		}
		c.master = path
	case "redis-cluster":
		if path != "" {
			return nil, fail("Redis Cluster has no databases: leave out the path")
		}
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fail("bad query: %v", err)
	}
	for key, vals := range q {
		if len(vals) != 1 {
			return nil, fail("%s given %d times", key, len(vals))
		}
		if err := c.option(key, vals[0]); err != nil {
			return nil, fail("%v", err)
		}
	}
	return c, nil
}

// redisAddr checks one host[:port] of a spec and adds the default port.
func redisAddr(h, defaultPort string) (string, error) {
	if h == "" {
		return "", errors.New("empty server address")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port: host alone (an IPv6 literal needs brackets and a port).
		if strings.ContainsAny(h, ":[]") {
			return "", fmt.Errorf("server %q is not host:port", h)
		}
		host, port = h, defaultPort
	}
	if host == "" {
		return "", fmt.Errorf("server %q has no host", h)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("server %q: port must be 1–65535", h)
	}
	return net.JoinHostPort(host, port), nil
}

// option applies one query option.
func (c *redisConfig) option(key, v string) error {
	duration := func(dst *time.Duration) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%s %q: want a positive duration such as 500ms", key, v)
		}
		*dst = d
		return nil
	}
	count := func(dst *int, min int) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			return fmt.Errorf("%s %q: want an integer of at least %d", key, v, min)
		}
		*dst = n
		return nil
	}
	switch key {
	case "prefix":
		if v == "" {
			return fmt.Errorf("prefix is empty (leave it out for the default %q)", redisstore.DefaultPrefix)
		}
		c.store.Prefix = v
	case "wait_replicas":
		return count(&c.store.WaitReplicas, 0)
	case "wait_timeout":
		return duration(&c.store.WaitTimeout)
	case "timeout":
		return duration(&c.store.Timeout)
	case "dial_timeout":
		return duration(&c.dialTimeout)
	case "read_timeout":
		return duration(&c.readTimeout)
	case "write_timeout":
		return duration(&c.writeTimeout)
	case "pool_size":
		return count(&c.poolSize, 1)
	case "db":
		if c.kind != "redis-sentinel" {
			return errors.New("db is a Sentinel option; redis:// takes the database as the path (/0)")
		}
		return count(&c.db, 0)
	default:
		return fmt.Errorf("unknown option %q (want prefix, wait_replicas, wait_timeout, timeout, dial_timeout, read_timeout, write_timeout, pool_size or db)", key)
	}
	return nil
}

// client makes the go-redis client the spec describes. Each dial is tried
// once (go-redis's default is five, 100 ms apart, for every command retry),
// so a dead server is reported in about one dial timeout.
func (c *redisConfig) client() redis.UniversalClient {
	var tlsConf *tls.Config
	if c.tls {
		host, _, _ := net.SplitHostPort(c.addrs[0])
		tlsConf = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	switch c.kind {
	case "redis-sentinel":
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: c.master, SentinelAddrs: c.addrs,
			Username: c.username, Password: c.password, DB: c.db,
			DialTimeout: c.dialTimeout, ReadTimeout: c.readTimeout, WriteTimeout: c.writeTimeout,
			DialerRetries: 1, PoolSize: c.poolSize,
		})
	case "redis-cluster":
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:    c.addrs,
			Username: c.username, Password: c.password,
			DialTimeout: c.dialTimeout, ReadTimeout: c.readTimeout, WriteTimeout: c.writeTimeout,
			DialerRetries: 1, PoolSize: c.poolSize,
		})
	}
	return redis.NewClient(&redis.Options{
		Addr:     c.addrs[0],
		Username: c.username, Password: c.password, DB: c.db,
		TLSConfig:   tlsConf,
		DialTimeout: c.dialTimeout, ReadTimeout: c.readTimeout, WriteTimeout: c.writeTimeout,
		DialerRetries: 1, PoolSize: c.poolSize,
	})
}

// openRedis opens a redisstore on the client the spec describes. New
// loads the store's scripts, so a wrong address, password or master name
// fails the node at start. Ready is left nil: a Redis outage fails each
// request with a 503 on every node alike, and taking the nodes out of the
// balancer would only turn those into connection errors.
func openRedis(ctx context.Context, spec string, env Env) (*Opened, error) {
	c, err := parseRedis(spec)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store spec %q: %w", Redact(spec), err)
	}
	client := c.client()
	c.store.Logger = env.Logger
	st, err := redisstore.New(ctx, client, c.store)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store spec %q: %w", Redact(spec), err), client.Close())
	}
	return &Opened{
		Store: st,
		Kind:  c.kind,
		// The store does not own the client; the node closes it here.
		Close: func(context.Context) error { return client.Close() },
	}, nil
}
