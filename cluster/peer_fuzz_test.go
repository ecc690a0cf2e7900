package cluster_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/roamsession/roam/cluster"
	"github.com/roamsession/roam/cluster/internal/wire"
	"github.com/roamsession/roam/internal/proc"
	"github.com/roamsession/roam/session"
)

// fuzzPeer starts one live single-node cluster without a secret (its peer
// protocol is plain h2c, so a fuzzer can speak it), once per fuzzing
// process, closed when the target ends.
func fuzzPeer(f *testing.F) (*cluster.Store, *http.Client) {
	f.Helper()
	gossip, err := proc.FreeAddr("127.0.0.1")
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := cluster.New(ctx, cluster.Config{
		NodeID: "n1", Bind: gossip, PeerBind: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	if err := s.WaitReady(ctx); err != nil {
		f.Fatal(err)
	}
	// A live session the inputs may change (the protocol without a secret
	// trusts its peers) but must never crash on.
	now := time.Now()
	err = s.Apply(ctx, "canary", session.Delta{Create: true, SetPrincipal: true, Principal: "alice",
		Set: map[string][]byte{"k": []byte(`"v"`)}, Created: now, Touched: now, Expires: now.Add(time.Hour)})
	if err != nil {
		f.Fatal(err)
	}
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	f.Cleanup(tr.CloseIdleConnections)
	return s, &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// fuzzOps are the peer operations the fuzzer may call. hello and pull are
// left out: they register a joiner at an address taken from the frame,
// which the node would then dial, and a fuzzer must not make the test
// reach beyond loopback.
var fuzzOps = []string{"writes", "forward", "fetch", "query", "ping", "write-stream"}

// FuzzPeerFrames posts arbitrary frames to a live node's replication
// endpoints, as a peer would: the node answers every one with a status (a
// bad frame gets 400; on a write stream, already answered 200, an Error
// frame), never breaks the stream (a panicking handler would), and still
// answers a ping and serves its sessions afterwards.
func FuzzPeerFrames(f *testing.F) {
	st := wire.Stamp{T: uint64(time.Now().Add(time.Hour).UnixNano()), Node: "n2"}
	ent := wire.Entry{ID: "canary", Born: st, Created: 1, TouchedStamp: st, Touched: 2, ExpiresStamp: st,
		Expires: time.Now().Add(time.Hour).UnixNano(), PrincipalStamp: st, Principal: "mallory",
		Attrs: []wire.Attr{{Key: "k", Stamp: st, Value: []byte(`"x"`)}, {Key: "gone", Stamp: st, Deleted: true}}}
	for op, m := range map[byte]wire.Message{
		0: &wire.Writes{From: "n2", Items: []wire.Write{{Full: true, Prev: st, Entry: ent}, {Entry: wire.Entry{ID: "x", Dead: st, DeadUntil: 5}}}},
		1: &wire.Forward{Hops: 1, Op: wire.OpApply, ID: "canary", Delta: wire.Delta{Set: []wire.KV{{Key: "a", Value: []byte("1")}}, Del: []string{"k"}, Touched: 2, Expires: 3}},
		2: &wire.Fetch{IDs: []string{"canary", "nope", ""}},
		3: &wire.Query{Kind: wire.QueryPrincipal, Principal: "alice"},
		4: &wire.Ping{Payload: []byte("hello")},
	} {
		f.Add(op, wire.Marshal(m))
	}
	// Two batches on one write stream, then one the node cannot decode.
	writes := wire.Marshal(&wire.Writes{From: "n2", Items: []wire.Write{{Full: true, Prev: st, Entry: ent}}})
	f.Add(byte(5), append(append(slices.Clip(writes), writes...), wire.Marshal(&wire.Ping{})...))
	f.Add(byte(0), []byte{})
	f.Add(byte(1), wire.Marshal(&wire.Ping{}))        // a frame of the wrong type
	f.Add(byte(2), []byte{0xff, 0xff, 0xff, 0xff, 0}) // a header claiming a huge frame
	s, c := fuzzPeer(f)
	f.Fuzz(func(t *testing.T, op byte, body []byte) {
		url := "http://" + s.PeerAddr() + "/roam/v1/" + fuzzOps[int(op)%len(fuzzOps)]
		resp, err := c.Post(url, "application/x-roam-frame", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s with %x: %v (a handler that panics resets its stream)", url, body, err)
		}
		_, rerr := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if rerr != nil {
			t.Fatalf("POST %s with %x: the answer broke off: %v", url, body, rerr)
		}
		switch resp.StatusCode {
		case http.StatusOK, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("POST %s with %x: %s", url, body, resp.Status)
		}
		ping, err := c.Post("http://"+s.PeerAddr()+"/roam/v1/ping", "application/x-roam-frame", bytes.NewReader(wire.Marshal(&wire.Ping{Payload: []byte("ok")})))
		if err != nil || ping.StatusCode != http.StatusOK {
			t.Fatalf("after POST %s with %x the node does not answer a ping: %v", url, body, err)
		}
		ping.Body.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.Load(ctx, "canary"); err != nil && err != session.ErrNotFound {
			t.Fatalf("after POST %s with %x, Load fails: %v", url, body, err)
		}
	})
}
