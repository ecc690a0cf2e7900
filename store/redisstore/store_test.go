package redisstore_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roamsession/roam/internal/testserver"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/redisstore"
)

func TestNewRejectsBadOptions(t *testing.T) {
	r := testserver.Redis(t)
	client := standaloneClient(t, r.Addr) // ReadTimeout 500ms
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": r.Addr}})
	t.Cleanup(func() { ring.Close() })
	for _, c := range []struct {
		name   string
		client redis.UniversalClient
		opts   redisstore.Options
		want   string
	}{
		{"nil client", nil, redisstore.Options{}, "client is nil"},
		{"ring", ring, redisstore.Options{}, "Ring is not supported"},
		{"negative WaitReplicas", client, redisstore.Options{WaitReplicas: -1}, "WaitReplicas"},
		{"negative WaitTimeout", client, redisstore.Options{WaitTimeout: -time.Second}, "WaitTimeout"},
		{"negative Timeout", client, redisstore.Options{Timeout: -time.Second}, "Timeout"},
		{"WAIT longer than the read timeout", client, redisstore.Options{WaitReplicas: 1, WaitTimeout: time.Second}, "ReadTimeout"},
	} {
		_, err := redisstore.New(t.Context(), c.client, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New = %v, want an error mentioning %q", c.name, err, c.want)
		}
	}
}

func TestNewFailsWhenRedisIsDown(t *testing.T) {
	r := testserver.Redis(t)
	client := standaloneClient(t, r.Addr)
	r.Kill()
	if _, err := redisstore.New(t.Context(), client, redisstore.Options{}); err == nil {
		t.Fatal("New with the server down = nil error, want one")
	}
}

// TestKeysAndFields pins the schema the package doc promises: one hash per
// session under prefix{id} with a TTL, attributes as v:name fields beside
// the metadata, and attribute names that look like metadata kept apart.
func TestKeysAndFields(t *testing.T) {
	r := testserver.Redis(t)
	client := standaloneClient(t, r.Addr)
	s := newStore(t, client, redisstore.Options{Prefix: "app:"})
	ctx := t.Context()
	id := session.NewID()
	now := time.Now()
	d := session.Delta{
		Create: true, Set: map[string][]byte{"c": []byte("not created"), "e": []byte("not expires"), "p": []byte("x"), "v:c": []byte("y")},
		SetPrincipal: true, Principal: "alice", Created: now, Touched: now, Expires: now.Add(time.Hour),
	}
	if err := s.Apply(ctx, id, d); err != nil {
		t.Fatal(err)
	}
	key := "app:{" + id + "}"
	fields, err := client.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"c", "t", "e", "p", "v:c", "v:e", "v:p", "v:v:c"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("hash %s has no field %q (fields %v)", key, f, fields)
		}
	}
	if fields["p"] != "alice" {
		t.Errorf("principal field = %q, want alice", fields["p"])
	}
	if ms, err := client.PExpireTime(ctx, key).Result(); err != nil || ms.Milliseconds() < d.Expires.UnixMilli() {
		t.Errorf("PEXPIRETIME %s = %v, %v, want %v", key, ms, err, d.Expires)
	}
	rec, err := s.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range d.Set {
		if string(rec.Values[k]) != string(v) {
			t.Errorf("Values[%q] = %q, want %q", k, rec.Values[k], v)
		}
	}
	// The index score is the deadline plus a quarter of the time left, and
	// the hash records it.
	exp := d.Expires.UnixMicro()
	most := exp + (exp-now.UnixMicro())/4
	score, err := client.ZScore(ctx, "app:principal:alice", id).Result()
	if err != nil || int64(score) < exp || int64(score) > most {
		t.Errorf("index score = %.0f, %v, want in [%d, %d]", score, err, exp, most)
	}
	if fields["i"] != strconv.FormatInt(int64(score), 10) {
		t.Errorf("hash field i = %q, want the index score %.0f", fields["i"], score)
	}
}

// TestForeignHashUnderPrefixIsNotASession: a hash someone else wrote where
// a session would be is an absent session for Load (never a record with
// made-up deadlines) and for Apply, and is left out of Count.
func TestForeignHashUnderPrefixIsNotASession(t *testing.T) {
	r := testserver.Redis(t)
	client := standaloneClient(t, r.Addr)
	s := newStore(t, client, redisstore.Options{Prefix: "app:"})
	ctx := t.Context()
	id := session.NewID()
	if err := client.HSet(ctx, "app:{"+id+"}", "user", "mallory", "e", "tomorrow").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, id); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Load of a foreign hash = %v, want ErrNotFound", err)
	}
	if n, err := s.Count(ctx); err != nil || n != 0 {
		t.Errorf("Count with only a foreign hash = %d, %v, want 0", n, err)
	}
}

// TestPrefixIsMatchedLiterally: glob characters in a prefix do not make
// Count or Range see another prefix's sessions.
func TestPrefixIsMatchedLiterally(t *testing.T) {
	r := testserver.Redis(t)
	client := standaloneClient(t, r.Addr)
	star := newStore(t, client, redisstore.Options{Prefix: "a*:"})
	other := newStore(t, client, redisstore.Options{Prefix: "ab:"})
	ctx := t.Context()
	now := time.Now()
	for _, s := range []*redisstore.Store{star, other, other} {
		if err := s.Apply(ctx, session.NewID(), session.Delta{Create: true, Created: now, Touched: now, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := star.Count(ctx); err != nil || n != 1 {
		t.Errorf(`Count of prefix "a*:" beside 2 sessions of "ab:" = %d, %v, want 1`, n, err)
	}
	if n, err := other.Count(ctx); err != nil || n != 2 {
		t.Errorf(`Count of prefix "ab:" = %d, %v, want 2`, n, err)
	}
}
