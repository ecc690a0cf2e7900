package storespec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/roamsession/roam/store/memcachedstore"
)

// memcachedConfig is a parsed memcached:// spec.
type memcachedConfig struct {
	servers []string
	client  memcachedstore.ClientOptions
	store   memcachedstore.Options
}

// parseMemcached parses
//
//	memcached://host:port[,host:port…][?timeout=200ms&max_idle=32&prefix=roam:]
//
// timeout is the client's per-step network timeout, max_idle its idle
// connections per server, prefix the key prefix. Memcached's text protocol
// has no authentication, so a spec with user info is refused rather than
// silently sending nothing; errors quote the spec redacted.
func parseMemcached(spec string) (*memcachedConfig, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("store spec %q: "+format, append([]any{Redact(spec)}, args...)...)
	}
	rest, ok := strings.CutPrefix(spec, "memcached://")
	if !ok {
		return nil, fail("want memcached://host:port[,host:port…][?timeout=…&max_idle=…&prefix=…]")
	}
	hosts, query, _ := strings.Cut(rest, "?")
	hosts = strings.TrimSuffix(hosts, "/")
	if strings.Contains(hosts, "@") {
		return nil, fail("memcached has no authentication (the text protocol carries no user or password)")
	}
	if strings.Contains(hosts, "/") {
		return nil, fail("memcached takes no path")
	}
	c := &memcachedConfig{}
	for _, h := range strings.Split(hosts, ",") {
		host, port, err := net.SplitHostPort(h)
		if err != nil || host == "" {
			return nil, fail("server %q is not host:port", h)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fail("server %q: port must be 1–65535", h)
		}
		c.servers = append(c.servers, h)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fail("bad query: %v", err)
	}
	for key, vals := range q {
		if len(vals) != 1 {
			return nil, fail("%s given %d times", key, len(vals))
		}
		v := vals[0]
		switch key {
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, fail("timeout %q: want a positive duration such as 200ms", v)
			}
			c.client.Timeout = d
		case "max_idle":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, fail("max_idle %q: want a positive integer", v)
			}
			c.client.MaxIdleConns = n
		case "prefix":
			if v == "" {
				return nil, fail("prefix is empty (leave it out for the default %q)", memcachedstore.DefaultPrefix)
			}
			c.store.Prefix = v
		default:
			return nil, fail("unknown option %q (want timeout, max_idle or prefix)", key)
		}
	}
	return c, nil
}

// openMemcached opens a memcachedstore over the spec's servers, placed by
// rendezvous hashing, and pings every server so that a wrong address fails
// the node at start rather than on its first requests. Ready is left nil:
// a down server fails only its own sessions' requests, which is no reason
// to take the whole node out of the balancer.
func openMemcached(ctx context.Context, spec string, env Env) (*Opened, error) {
	c, err := parseMemcached(spec)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store spec %q: %w", Redact(spec), err)
	}
	client, _, err := memcachedstore.NewClient(c.servers, c.client)
	if err != nil {
		return nil, fmt.Errorf("store spec %q: %w", Redact(spec), err)
	}
	c.store.Logger = env.Logger
	st, err := memcachedstore.New(client, c.store)
	if err == nil {
		// gomemcache takes no context: Ping is bounded by the client's
		// timeout per server instead.
		if perr := client.Ping(); perr != nil {
			err = fmt.Errorf("ping: %w", perr)
		}
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("store spec %q: %w", Redact(spec), err), client.Close())
	}
	return &Opened{
		Store: st,
		Kind:  "memcached",
		Close: func(context.Context) error { return client.Close() },
	}, nil
}
