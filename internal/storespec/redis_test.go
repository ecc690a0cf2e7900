package storespec

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/redisstore"
)

func TestParseRedis(t *testing.T) {
	cases := []struct {
		spec string
		want redisConfig
	}{
		{"redis://127.0.0.1:6379", redisConfig{kind: "redis", addrs: []string{"127.0.0.1:6379"}}},
		{"redis://localhost", redisConfig{kind: "redis", addrs: []string{"localhost:6379"}}},
		{"redis://u:p%40ss@h:1/3", redisConfig{kind: "redis", addrs: []string{"h:1"}, username: "u", password: "p@ss", db: 3}},
		{"redis://:secret@h:1/", redisConfig{kind: "redis", addrs: []string{"h:1"}, password: "secret"}},
		{"rediss://h:6380", redisConfig{kind: "redis", tls: true, addrs: []string{"h:6380"}}},
		{"redis://[::1]:7000", redisConfig{kind: "redis", addrs: []string{"[::1]:7000"}}},
		{"redis-sentinel://a:1,b:2,c/mymaster?db=2", redisConfig{kind: "redis-sentinel", addrs: []string{"a:1", "b:2", "c:26379"}, master: "mymaster", db: 2}},
		{"redis-cluster://a:1,b:2", redisConfig{kind: "redis-cluster", addrs: []string{"a:1", "b:2"}}},
		{"redis-cluster://a:1,b:2/", redisConfig{kind: "redis-cluster", addrs: []string{"a:1", "b:2"}}},
	}
	for _, c := range cases {
		got, err := parseRedis(c.spec)
		if err != nil {
			t.Errorf("parseRedis(%q) = %v", c.spec, err)
			continue
		}
		if got.kind != c.want.kind || got.tls != c.want.tls || !slices.Equal(got.addrs, c.want.addrs) || got.master != c.want.master ||
			got.username != c.want.username || got.password != c.want.password || got.db != c.want.db {
			t.Errorf("parseRedis(%q) = %+v, want %+v", c.spec, *got, c.want)
		}
		if got.dialTimeout != redisDefaultDialTimeout || got.readTimeout != redisDefaultReadTimeout || got.store.Timeout != redisDefaultTimeout {
			t.Errorf("parseRedis(%q): timeouts %v/%v/%v, want the defaults", c.spec, got.dialTimeout, got.readTimeout, got.store.Timeout)
		}
	}
}

func TestParseRedisOptions(t *testing.T) {
	got, err := parseRedis("redis://h:1?prefix=app:&wait_replicas=2&wait_timeout=50ms&timeout=3s&dial_timeout=100ms&read_timeout=200ms&write_timeout=300ms&pool_size=8")
	if err != nil {
		t.Fatal(err)
	}
	want := redisstore.Options{Prefix: "app:", WaitReplicas: 2, WaitTimeout: 50 * time.Millisecond, Timeout: 3 * time.Second}
	if got.store != want {
		t.Errorf("store options = %+v, want %+v", got.store, want)
	}
	if got.dialTimeout != 100*time.Millisecond || got.readTimeout != 200*time.Millisecond || got.writeTimeout != 300*time.Millisecond || got.poolSize != 8 {
		t.Errorf("client options = dial %v read %v write %v pool %d", got.dialTimeout, got.readTimeout, got.writeTimeout, got.poolSize)
	}
}

// TestParseRedisRejects: malformed specs fail with a message that quotes
// the spec redacted and never the password, whatever part of it is bad.
func TestParseRedisRejects(t *testing.T) {
	const secret = "s3cr?t/pw"
	for _, spec := range []string{
		"redis://",
		"redis://h:0",
		"redis://h:99999",
		"redis://h:port",
		"redis://a:1,b:2",
		"redis://h:1/db",
		"redis://h:1/-1",
		"redis://h:1?db=2",
		"redis://h:1?prefix=",
		"redis://h:1?wait_replicas=-1",
		"redis://h:1?wait_timeout=soon",
		"redis://h:1?timeout=0s",
		"redis://h:1?pool_size=0",
		"redis://h:1?prefix=a&prefix=b",
		"redis://h:1?password=x",
		"redis://h:1?%zz",
		"redis-sentinel://a:1,b:2",
		"redis-sentinel://a:1/m/0",
		"redis-cluster://a:1/0",
		"redis-cluster://a:1,,b:2",
		"redis-cluster://:1",
		"redis+tls://h:1",
		"redis:h:1",
		"redis://user:" + secret + "@h:1?timeout=x",
		"redis://user:" + secret + "@h:0",
		"redis://user:" + secret + "@",
		"redis://user:" + secret + "@h:1/x",
		"redis://user:%zz" + secret + "@h:1",
		"redis-cluster://user:" + secret + "@a:1,b:x",
		"redis-sentinel://user:" + secret + "@a:1",
	} {
		_, err := parseRedis(spec)
		if err == nil {
			t.Errorf("parseRedis(%q) = nil error, want one", spec)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "s3cr") || strings.Contains(msg, "t/pw") {
			t.Errorf("parseRedis error leaks the password: %s", msg)
		}
		if !strings.Contains(msg, `store spec "`) {
			t.Errorf("parseRedis(%q) error %q does not quote the spec", spec, msg)
		}
	}
}

// TestOpenRedis opens the store through Open against a real server and
// uses it; a wrong password fails the open without echoing it.
func TestOpenRedis(t *testing.T) {
	r := testserver.Redis(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	o, err := Open(ctx, "redis://"+r.Addr+"/1?prefix=spec:&timeout=1s", Env{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { o.Close(context.Background()) })
	if o.Kind != "redis" {
		t.Errorf("Kind = %q, want redis", o.Kind)
	}
	id := session.NewID()
	now := time.Now()
	if err := o.Store.Apply(ctx, id, session.Delta{Create: true, Set: map[string][]byte{"a": []byte("1")}, Created: now, Touched: now, Expires: now.Add(time.Minute)}); err != nil {
		t.Fatalf("Apply through the opened store: %v", err)
	}
	if rec, err := o.Store.Load(ctx, id); err != nil || string(rec.Values["a"]) != "1" {
		t.Fatalf("Load through the opened store = %v, %v", rec, err)
	}

	_, err = Open(ctx, "redis://user:s3cretpw@"+r.Addr, Env{})
	if err == nil {
		t.Fatal("Open with a password the server does not know = nil error, want one")
	}
	if strings.Contains(err.Error(), "s3cretpw") {
		t.Errorf("Open error leaks the password: %v", err)
	}

	r.Kill()
	_, err = Open(ctx, "redis://"+r.Addr, Env{})
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open with the server down = %v, want a prompt connection error", err)
	}
}
