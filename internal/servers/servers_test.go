package servers

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestGroupCloseStopsItsServersAndRemovesTheirFiles(t *testing.T) {
	if _, err := LookBinary("redis-server"); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal("redis-server not installed (Debian package redis-server); CI=true, so this fails")
		}
		t.Skip("!!! SKIPPING: redis-server not installed (apt-get install -y redis-server)")
	}
	var g Group
	defer g.Close()
	r, err := StartRedis(&g, RedisOptions{})
	if err != nil {
		t.Fatalf("StartRedis: %v", err)
	}
	if !r.Running() {
		t.Fatal("Running() = false right after StartRedis")
	}
	pid := r.Proc().PID()
	g.Close()
	if r.Running() {
		t.Fatalf("redis (pid %d) still running after Close", pid)
	}
	if c, err := net.DialTimeout("tcp", r.Addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Close", r.Addr)
	}
	if _, err := os.Stat(r.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s still exists after Close (stat: %v)", r.Dir, err)
	}
	g.Close() // a second Close is harmless
}

func TestAMissingBinaryNamesItsPackage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := LookBinary("memcached"); err == nil {
		t.Skip("memcached is in an sbin directory, which PATH does not hide")
	}
	var g Group
	defer g.Close()
	_, err := StartMemcached(&g, MemcachedOptions{})
	var ni *NotInstalledError
	if !errors.As(err, &ni) || !errors.Is(err, ErrNotInstalled) || ni.Package != "memcached" ||
		!strings.Contains(err.Error(), "apt-get install -y memcached") {
		t.Fatalf("StartMemcached without memcached = %v, want a *NotInstalledError naming the package", err)
	}
}
