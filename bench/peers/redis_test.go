package peers

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/alexedwards/scs/goredisstore"
	"github.com/redis/go-redis/v9"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/store/redisstore"
)

// redisPeers starts a redis-server of the benchmark's own and returns
// roam's and scs's handlers on it, both over one go-redis client.
func redisPeers(tb testing.TB) (roam, scs handlers) {
	r := testserver.Redis(tb)
	client := redis.NewClient(&redis.Options{Addr: r.Addr})
	tb.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := redisstore.New(ctx, client, redisstore.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return roamHandlers(tb, store), scsHandlers(goredisstore.New(client))
}

// BenchmarkRedisMiddleware runs the three requests through roam with
// redisstore and through scs with goredisstore, on one server, in the same
// run: compare roam/X with scs/X. scs keeps the session as one string (GET
// to load, SET of the whole blob to save) and loads it on every request
// with a cookie; roam keeps a hash (HGETALL to load, only when the handler
// touches the session) and saves a delta with one script that also checks
// the session still exists.
func BenchmarkRedisMiddleware(b *testing.B) {
	roam, scs := redisPeers(b)
	for _, lib := range []struct {
		name string
		h    handlers
	}{{"roam", roam}, {"scs", scs}} {
		b.Run(lib.name, func(b *testing.B) {
			cookie := loginCookie(b, lib.h)
			b.Run("untouched", func(b *testing.B) { run(b, lib.h.untouched, cookie) })
			b.Run("read", func(b *testing.B) { run(b, lib.h.read, cookie) })
			b.Run("write", func(b *testing.B) { run(b, lib.h.write, cookie) })
		})
	}
}

// TestRedisPeersKeepTheSession checks the benchmark's setup: each library
// round-trips a session through its Redis store, so the numbers compare
// like with like.
func TestRedisPeersKeepTheSession(t *testing.T) {
	roam, scs := redisPeers(t)
	for name, h := range map[string]handlers{"roam": roam, "scs": scs} {
		cookie := loginCookie(t, h)
		for range 2 {
			r := httptest.NewRequest("GET", "/", nil)
			r.AddCookie(cookie)
			h.write.ServeHTTP(httptest.NewRecorder(), r)
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.AddCookie(cookie)
		rec := httptest.NewRecorder()
		h.read.ServeHTTP(rec, r)
		if rec.Body.String() != "alice" {
			t.Errorf("%s: read back %q, want alice", name, rec.Body.String())
		}
	}
}
