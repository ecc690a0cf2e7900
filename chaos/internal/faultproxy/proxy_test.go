package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// echoServer accepts connections and echoes every line back; it counts
// the connections it accepted.
type echoServer struct {
	ln       net.Listener
	accepted atomic.Int64
}

func newEchoServer(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return e
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New(Options{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// roundTrip sends line and reads the echo, within d.
func roundTrip(c net.Conn, r *bufio.Reader, line string, d time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := r.ReadString('\n')
	if len(got) > 0 {
		got = got[:len(got)-1]
	}
	return got, err
}

func TestPassForwardsBothWays(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c, r := dial(t, p.Addr())
	for _, line := range []string{"one", "two"} {
		if got, err := roundTrip(c, r, line, 5*time.Second); err != nil || got != line {
			t.Fatalf("echo of %q through the proxy = %q, %v", line, got, err)
		}
	}
	if s := p.Stats(); s.Accepted != 1 || s.Open != 1 {
		t.Errorf("stats = %+v, want 1 accepted, 1 open", s)
	}
}

func TestBlackholeHoldsBytesAndReleasesThemOnPass(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c, r := dial(t, p.Addr())
	if _, err := roundTrip(c, r, "warm", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Blackhole)
	// Absence can only be shown by waiting: 300 ms of silence from a
	// loopback echo that answers in microseconds.
	if got, err := roundTrip(c, r, "held", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("echo through a blackhole = %q, %v; want a timeout", got, err)
	}
	p.SetMode(Pass)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := r.ReadString('\n')
	if err != nil || got != "held\n" {
		t.Fatalf("after the blackhole ended, read %q, %v; want the held line", got, err)
	}
}

func TestBlackholeHoldsNewConnectionsFromTheTarget(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	p.SetMode(Blackhole)
	c, r := dial(t, p.Addr())
	if _, err := roundTrip(c, r, "x", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection made during a blackhole answered: %v", err)
	}
	if n := e.accepted.Load(); n != 0 {
		t.Fatalf("the target saw %d connections during the blackhole, want 0", n)
	}
	p.SetMode(Pass)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "x\n" {
		t.Fatalf("after the blackhole, read %q, %v", got, err)
	}
}

func TestResetClosesOpenAndNewConnections(t *testing.T) {
	e := newEchoServer(t)
	p := newProxy(t, e.ln.Addr().String())
	c, r := dial(t, p.Addr())
	if _, err := roundTrip(c, r, "warm", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Reset)
	if _, err := roundTrip(c, r, "after", 5*time.Second); err == nil {
		t.Fatal("an open connection survived Reset")
	}
	// A reset can land before the client's dial returns (the kernel then
	// reports it as the dial's error) or on the first round trip: either
	// way the connection must not be served.
	if c2, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second); err == nil {
		defer c2.Close()
		if _, err := roundTrip(c2, bufio.NewReader(c2), "new", 5*time.Second); err == nil {
			t.Fatal("a new connection was served in Reset mode")
		}
	}
	p.SetMode(Pass)
	c3, r3 := dial(t, p.Addr())
	if got, err := roundTrip(c3, r3, "again", 5*time.Second); err != nil || got != "again" {
		t.Fatalf("after Reset ended: %q, %v", got, err)
	}
}

func TestCloseEndsEverything(t *testing.T) {
	e := newEchoServer(t)
	p, err := New(Options{Target: e.ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	c, r := dial(t, p.Addr())
	if _, err := roundTrip(c, r, "warm", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.SetMode(Blackhole)
	held, _ := dial(t, p.Addr())
	_ = held
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with a held connection open")
	}
	if err := p.SetMode(Pass); !errors.Is(err, ErrClosed) {
		t.Errorf("SetMode after Close = %v, want ErrClosed", err)
	}
	if _, err := roundTrip(c, r, "x", 5*time.Second); err == nil {
		t.Error("a connection outlived Close")
	}
}

func TestNewRejectsAnEmptyTarget(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a target succeeded")
	}
}
