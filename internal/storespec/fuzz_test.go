package storespec

import (
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// secretsIn returns the passwords spec holds, raw and decoded, in user
// info or a password= parameter, that are distinctive enough to look for
// in a message: six or more letters and digits that occur in spec at most
// once (a password that is also the host name cannot be told apart).
func secretsIn(spec string) []string {
	u, err := url.Parse(spec)
	if err != nil {
		return nil
	}
	var cands []string
	if p, ok := u.User.Password(); ok {
		cands = append(cands, p)
		if _, raw, ok := strings.Cut(u.User.String(), ":"); ok {
			cands = append(cands, raw)
		}
	}
	cands = append(cands, u.Query()["password"]...)
	var out []string
	for _, p := range cands {
		if len(p) < 6 || strings.Count(spec, p) > 1 || strings.Trim(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
			continue
		}
		out = append(out, p)
	}
	return out
}

func checkAddr(t *testing.T, spec, addr string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		t.Fatalf("%q parsed to server address %q, which is not host:port", spec, addr)
	}
}

// FuzzParseSpec feeds arbitrary store SPECs to the parsers behind Open
// (everything but cluster:, whose parsing opens the store): none may
// panic, what parses names real host:port servers, and no error message
// and no redacted form of the spec ever shows a password the spec held.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"memory", "memory:x", "",
		"redis://127.0.0.1:6379", "redis://localhost", "redis://u:p%40ssw0rd1@h:1/3", "redis://:secret123@h:1/",
		"rediss://h:6380", "redis://[::1]:7000", "redis://h:0", "redis://h:65536", "redis://h:-1", "redis://h:1/x",
		"redis-sentinel://a:1,b:2,c/mymaster?db=2", "redis-sentinel://a:1", "redis-sentinel://,/m",
		"redis-cluster://a:1,b:2", "redis-cluster://a:1,b:2/", "redis-cluster://u:hunter22@a:1,b:2/x",
		"redis://h:1?prefix=app:&wait_replicas=2&wait_timeout=50ms&timeout=3s&dial_timeout=100ms&read_timeout=200ms&write_timeout=300ms&pool_size=8",
		"redis://h:1?wait_replicas=-1", "redis://h:1?wait_timeout=1h&read_timeout=1s", "redis://h:1?pool_size=99999999999999999999",
		"redis://us%zzer:pw@h", "redis://user:Secret99@h:1?bogus=1",
		"memcached://127.0.0.1:11211", "memcached://a:1,b:2?timeout=200ms&max_idle=32&prefix=roam:",
		"memcached://u:Passw0rd9@a:1", "memcached://", "memcached://a:1,,b:2", "memcached://a:1?max_idle=-3",
		"postgres://roam@127.0.0.1:5432/roam?sslmode=disable", "postgresql://u:Tr0ubador@h/db?prefix=x_&cleanup=off&timeout=1s&max_conns=4",
		"postgres://h/db?password=Qwerty123&sslmode=disable", "postgres://u:pa:ss@h/db", "postgres://h/db?cleanup=-1s",
		"mysql://roam:secret@127.0.0.1:3306/roam", "mysql://u:Zx9Zx9Zx9@h:1/db?tls=true&cleanup_batch=10",
		"mysql://u@/db", "mysql://u:p@h:1/db?password=Hidden777",
		"sqlite:///tmp/x.db", "sqlite:rel/x.db", "sqlite::memory:", "sqlite:///x.db?_pragma=busy_timeout(5000)&max_conns=2",
		"sqlite:", "sqlite:///", "cluster:backup?backups=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		kind, _, _ := strings.Cut(spec, ":")
		var err error
		switch kind {
		case "redis", "rediss", "redis-sentinel", "redis-cluster":
			var c *redisConfig
			if c, err = parseRedis(spec); err == nil {
				if len(c.addrs) == 0 {
					t.Fatalf("%q parsed to no server", spec)
				}
				for _, a := range c.addrs {
					checkAddr(t, spec, a)
				}
				if c.kind == "redis-sentinel" && c.master == "" {
					t.Fatalf("%q parsed to a Sentinel spec without a master name", spec)
				}
			}
		case "memcached":
			var c *memcachedConfig
			if c, err = parseMemcached(spec); err == nil {
				if len(c.servers) == 0 {
					t.Fatalf("%q parsed to no server", spec)
				}
				for _, a := range c.servers {
					checkAddr(t, spec, a)
				}
			}
		case "postgres", "postgresql", "mysql", "sqlite":
			var c *sqlConfig
			if c, err = parseSQL(spec); err == nil && (c.driver == "" || c.maxConns < 1) {
				t.Fatalf("%q parsed to driver %q with %d connections", spec, c.driver, c.maxConns)
			}
		}
		for _, p := range secretsIn(spec) {
			if err != nil && strings.Contains(err.Error(), p) {
				t.Fatalf("the error for %q shows its password %q: %v", spec, p, err)
			}
			if r := redactSQL(spec); strings.Contains(r, p) {
				t.Fatalf("redacted %q still shows its password %q: %q", spec, p, r)
			}
		}
	})
}
