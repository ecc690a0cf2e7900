package cluster

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/roamsession/roam/cluster/internal/wire"
	"github.com/roamsession/roam/session"
)

func TestPeerWithoutTheSecretCannotJoinOrInject(t *testing.T) {
	secret := []byte("correct horse battery staple")
	c := newTCluster(t, ModeBackup, 2, func(cfg *Config) {
		if cfg.NodeID != "n3" && cfg.NodeID != "n4" {
			cfg.Secret = secret
		}
		if cfg.NodeID == "n3" {
			cfg.Secret = []byte("a guess")
		}
	})
	victim := c.node("n1")

	// A node with the wrong secret, and one with none, try to join.
	for _, id := range []string{"n3", "n4"} {
		s := c.start(id)
		// It finds no seed that will talk to it, and after its start-up
		// grace runs alone.
		if err := s.WaitReady(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		for _, m := range victim.Members() {
			if m.ID == id {
				t.Fatalf("%s joined a cluster whose secret it does not hold", id)
			}
		}
		if got := s.mem.view().ready; !slices.Equal(got, []string{id}) {
			t.Fatalf("%s sees members %v, want only itself", id, got)
		}
	}

	id := session.NewID()
	evil := wire.Writes{From: "n3", Items: []wire.Write{{Full: true, Entry: wire.Entry{
		ID: id, Born: wire.Stamp{T: uint64(time.Now().UnixNano()), Node: "n3"},
		Attrs: []wire.Attr{{Key: "user", Stamp: wire.Stamp{T: uint64(time.Now().UnixNano()), Node: "n3"}, Value: []byte(`"admin"`)}},
	}}}}
	// With the wrong key (mutual TLS refuses it).
	var res wire.Results
	if err := c.node("n3").pc.call(context.Background(), victim.PeerAddr(), pathWrites, &evil, &res); err == nil {
		t.Fatal("a write from a peer with the wrong secret was accepted")
	}
	// In clear text, without TLS at all.
	if err := c.node("n4").pc.call(context.Background(), victim.PeerAddr(), pathWrites, &evil, &res); err == nil {
		t.Fatal("a clear-text write was accepted by a node with a secret")
	}
	resp, err := http.Post("http://"+victim.PeerAddr()+pathPrefix+pathWrites, "application/x-roam-frame", bytes.NewReader(wire.Marshal(&evil)))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("an HTTP/1 clear-text write was accepted")
		}
	}
	for _, n := range []string{"n1", "n2"} {
		wantNotFound(t, c.node(n), id)
	}
	// The same write from a member that holds the secret is accepted: the
	// refusals above were the authentication, not a broken transport.
	if err := c.node("n2").pc.call(context.Background(), victim.PeerAddr(), pathWrites, &evil, &res); err != nil {
		t.Fatalf("a write from a member with the secret: %v", err)
	}
	if rec, _, _ := victim.tab.load(id, time.Now().UnixNano()); rec == nil {
		t.Fatal("control write from a member with the secret did not land")
	}
}
