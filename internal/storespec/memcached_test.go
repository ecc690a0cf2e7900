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
	"github.com/roamsession/roam/store/memcachedstore"
)

func TestParseMemcached(t *testing.T) {
	cases := []struct {
		spec    string
		servers []string
		timeout time.Duration
		idle    int
		prefix  string
	}{
		{"memcached://127.0.0.1:11211", []string{"127.0.0.1:11211"}, 0, 0, ""},
		{"memcached://127.0.0.1:11211/", []string{"127.0.0.1:11211"}, 0, 0, ""},
		{"memcached://a:1,b:2,[::1]:3", []string{"a:1", "b:2", "[::1]:3"}, 0, 0, ""},
		{"memcached://a:1?timeout=150ms&max_idle=64&prefix=app1:", []string{"a:1"}, 150 * time.Millisecond, 64, "app1:"},
		{"memcached://a:1,b:2/?prefix=x", []string{"a:1", "b:2"}, 0, 0, "x"},
	}
	for _, c := range cases {
		got, err := parseMemcached(c.spec)
		if err != nil {
			t.Errorf("parseMemcached(%q) = %v", c.spec, err)
			continue
		}
		if !slices.Equal(got.servers, c.servers) || got.client.Timeout != c.timeout || got.client.MaxIdleConns != c.idle || got.store.Prefix != c.prefix {
			t.Errorf("parseMemcached(%q) = servers %v timeout %v max_idle %d prefix %q; want %v %v %d %q",
				c.spec, got.servers, got.client.Timeout, got.client.MaxIdleConns, got.store.Prefix, c.servers, c.timeout, c.idle, c.prefix)
		}
	}
}

func TestParseMemcachedRejects(t *testing.T) {
	for _, spec := range []string{
		"memcached://",
		"memcached://host",
		"memcached://host:0",
		"memcached://host:99999",
		"memcached://a:1,",
		"memcached://:11211",
		"memcached://a:1/db",
		"memcached://a:1?timeout=soon",
		"memcached://a:1?timeout=-1s",
		"memcached://a:1?max_idle=0",
		"memcached://a:1?prefix=",
		"memcached://a:1?prefix=a&prefix=b",
		"memcached://a:1?pool=9",
		"memcached://a:1?%zz",
		"memcached:a:1",
	} {
		if _, err := parseMemcached(spec); err == nil {
			t.Errorf("parseMemcached(%q) = nil error, want it refused", spec)
		}
	}
}

func TestMemcachedErrorsNeverShowAPassword(t *testing.T) {
	for _, spec := range []string{
		"memcached://admin:hunter2@127.0.0.1:11211",
		"memcached://admin:hunter2@127.0.0.1:11211?pool=1",
		"memcached://admin:hunter2@127.0.0.1:1,bad",
	} {
		_, err := Open(t.Context(), spec, Env{})
		if err == nil {
			t.Errorf("Open(%q) = nil error, want the user info refused", Redact(spec))
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open error shows the password: %v", err)
		}
	}
}

func TestOpenMemcached(t *testing.T) {
	servers := testserver.MemcachedN(t, 2)
	spec := "memcached://" + servers[0].Addr + "," + servers[1].Addr + "?timeout=300ms&prefix=spec:"
	o, err := Open(t.Context(), spec, Env{})
	if err != nil {
		t.Fatalf("Open(%q) = %v", spec, err)
	}
	defer o.Close(context.Background())
	if o.Kind != "memcached" {
		t.Errorf("Kind = %q, want memcached", o.Kind)
	}
	if _, ok := o.Store.(*memcachedstore.Store); !ok {
		t.Fatalf("Store is %T, want *memcachedstore.Store", o.Store)
	}
	id := session.NewID()
	now := time.Now()
	if err := o.Store.Apply(t.Context(), id, session.Delta{Create: true, Set: map[string][]byte{"a": []byte("1")}, Expires: now.Add(time.Minute)}); err != nil {
		t.Fatalf("Apply through the opened store = %v", err)
	}
	if rec, err := o.Store.Load(t.Context(), id); err != nil || string(rec.Values["a"]) != "1" {
		t.Fatalf("Load through the opened store = %v, %v", rec, err)
	}

	// A server that does not answer fails Open, naming the spec.
	servers[1].Kill()
	_, err = Open(t.Context(), spec, Env{})
	if err == nil || !strings.Contains(err.Error(), "ping") {
		t.Errorf("Open with a dead server = %v, want a ping error", err)
	}
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Open(cancelled, "memcached://"+servers[0].Addr, Env{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a cancelled context = %v, want context.Canceled", err)
	}
}
