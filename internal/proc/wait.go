package proc

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Backoff bounds for Poll: the first retry comes quickly, because most
// servers are up within milliseconds, and later ones at most this far apart.
const (
	pollFirstDelay = 5 * time.Millisecond
	pollMaxDelay   = 250 * time.Millisecond
	attemptTimeout = 2 * time.Second // one dial or request, so a hung server cannot eat the whole deadline
)

// Poll calls check until it returns nil, sleeping with exponential backoff
// (5 ms doubling to 250 ms) between calls. It returns nil as soon as check
// does, or, once ctx is done, an error wrapping both ctx.Err() and check's
// last error. Give ctx a deadline: Poll has none of its own.
func Poll(ctx context.Context, check func(context.Context) error) error {
	delay := pollFirstDelay
	for {
		last := check(ctx)
		if last == nil {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("proc: condition not met: %w; last attempt: %w", ctx.Err(), last)
		case <-t.C:
		}
		delay = min(2*delay, pollMaxDelay)
	}
}

// WaitTCP waits until a TCP connection to addr succeeds, or ctx is done. The
// error then wraps ctx.Err() and the last dial error.
func WaitTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	err := Poll(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		defer cancel()
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		return fmt.Errorf("proc: wait for tcp %s: %w", addr, err)
	}
	return nil
}

// WaitHTTP waits until a GET of url answers with wantStatus, or ctx is done.
// Redirects are not followed, so a 3xx can be waited for. The error then
// wraps ctx.Err() and the last failure (a transport error or the wrong
// status).
func WaitHTTP(ctx context.Context, url string, wantStatus int) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		Timeout:       attemptTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	err := Poll(ctx, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != wantStatus {
			return fmt.Errorf("status %d, want %d", resp.StatusCode, wantStatus)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("proc: wait for %s: %w", url, err)
	}
	return nil
}
