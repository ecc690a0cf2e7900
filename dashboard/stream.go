package dashboard

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// maxStreams bounds concurrent event streams: each holds a connection and
// a goroutine, and the admin listener is for a handful of browser tabs.
const maxStreams = 64

// streamRetry is what EventSource waits before reconnecting, sent once per
// stream in milliseconds.
const streamRetry = 1000

// hub fans states out to event streams. A slow stream misses intermediate
// states rather than slowing the others: each has room for one, and the
// newest replaces an unsent one.
type hub struct {
	poke chan struct{} // asks Run for an immediate sample (after an action)

	mu     sync.Mutex
	subs   map[chan []byte]struct{}
	done   chan struct{}
	closed bool
}

func newHub() *hub {
	return &hub{poke: make(chan struct{}, 1), subs: map[chan []byte]struct{}{}, done: make(chan struct{})}
}

// subscribe returns a channel of encoded states, or nil when the hub is
// closed or full.
func (h *hub) subscribe() chan []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || len(h.subs) >= maxStreams {
		return nil
	}
	ch := make(chan []byte, 1)
	h.subs[ch] = struct{}{}
	return ch
}

func (h *hub) unsubscribe(ch chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, ch)
}

func (h *hub) publish(st State) {
	b, err := json.Marshal(st)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case <-ch: // drop the unsent older state
		default:
		}
		ch <- b
	}
}

// requestSample asks Run to sample now, without blocking.
func (h *hub) requestSample() {
	select {
	case h.poke <- struct{}{}:
	default:
	}
}

// close ends every stream; later subscriptions fail.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

// serveEvents streams states as server-sent events, the current one first,
// until the client goes away or Run ends.
func (d *Dashboard) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	ch := d.hub.subscribe()
	if ch == nil {
		http.Error(w, "dashboard: too many event streams, or shutting down", http.StatusServiceUnavailable)
		return
	}
	defer d.hub.unsubscribe(ch)
	// The admin server may have a write timeout; a stream has none.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	first, err := json.Marshal(d.Snapshot())
	if err != nil {
		return
	}
	if !writeEvent(w, rc, first, true) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-d.hub.done:
			return
		case b := <-ch:
			if !writeEvent(w, rc, b, false) {
				return
			}
		}
	}
}

// writeEvent writes one "state" event and flushes it; false means the
// client is gone.
func writeEvent(w http.ResponseWriter, rc *http.ResponseController, data []byte, first bool) bool {
	var buf []byte
	if first {
		buf = append(buf, "retry: "...)
		buf = strconv.AppendInt(buf, streamRetry, 10)
		buf = append(buf, '\n')
	}
	// JSON from encoding/json has no raw newlines, so it is one data line.
	buf = append(buf, "event: state\ndata: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := w.Write(buf); err != nil {
		return false
	}
	return rc.Flush() == nil
}
