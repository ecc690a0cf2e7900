package proc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitTCPWaitsForListener(t *testing.T) {
	addr, err := FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- WaitTCP(ctxTimeout(t, 10*time.Second), addr) }()

	// Nothing listens yet: WaitTCP must still be waiting.
	select {
	case err := <-done:
		t.Fatalf("WaitTCP returned %v before anything listened", err)
	default:
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port race lost (%v); FreeAddr documents it", err)
	}
	defer l.Close()
	if err := <-done; err != nil {
		t.Fatalf("WaitTCP after Listen = %v", err)
	}
}

func TestWaitTCPDeadline(t *testing.T) {
	addr, err := FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	err = WaitTCP(ctxTimeout(t, 200*time.Millisecond), addr)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitTCP on a closed port = %v, want DeadlineExceeded", err)
	}
}

func TestWaitHTTPWaitsForStatus(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusSeeOther)
	}))
	defer srv.Close()
	if err := WaitHTTP(ctxTimeout(t, 10*time.Second), srv.URL, http.StatusSeeOther); err != nil {
		t.Fatalf("WaitHTTP = %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("server saw %d requests, want 3 (two 503s, then the 303)", n)
	}
	err := WaitHTTP(ctxTimeout(t, 200*time.Millisecond), srv.URL, http.StatusTeapot)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitHTTP for a status never sent = %v, want DeadlineExceeded", err)
	}
}

func TestPollReturnsLastError(t *testing.T) {
	sentinel := errors.New("still broken")
	err := Poll(ctxTimeout(t, 50*time.Millisecond), func(context.Context) error { return sentinel })
	if !errors.Is(err, sentinel) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Poll = %v, want both the last error and DeadlineExceeded", err)
	}
}

func TestFreePorts(t *testing.T) {
	for _, host := range []string{"", "127.0.0.1", "127.0.0.2", "localhost"} {
		ports, err := FreePorts(host, 5)
		if err != nil {
			t.Fatalf("FreePorts(%q): %v", host, err)
		}
		seen := map[int]bool{}
		for _, p := range ports {
			if p <= 0 || p > 65535 || seen[p] {
				t.Fatalf("FreePorts(%q) = %v: want 5 distinct valid ports", host, ports)
			}
			seen[p] = true
		}
	}
	addr, err := FreeAddr("127.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on FreeAddr result %s: %v", addr, err)
	}
	l.Close()
	for _, host := range []string{"0.0.0.0", "10.0.0.1", "example.com"} {
		if _, err := FreePort(host); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("FreePort(%q) = %v, want ErrNotLoopback", host, err)
		}
	}
}
