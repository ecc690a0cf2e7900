package session

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
)

// ErrCommitFailed is returned by writes to a response whose session could
// not be saved; ErrorHandler has answered the request instead.
var ErrCommitFailed = errors.New("session: session could not be saved; the response was replaced by the error handler")

// Middleware returns a handler that attaches a lazily loaded session to each
// request's context (see FromContext) and saves its changes before the first
// byte of the response is written, so the cookie goes out with the headers
// and a client that sees the response can rely on the write having landed.
// Streaming, http.Flusher, http.Hijacker and http.ResponseController keep
// working through it.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// One allocation for both halves of the request's session state.
		st := &struct {
			s  Session
			rw responseWriter
		}{}
		s, sw := &st.s, &st.rw
		s.m, s.ctx, s.req = m, r.Context(), r
		*sw = responseWriter{ResponseWriter: w, s: s, r: r}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)))
		sw.commit()
	})
}

// responseWriter commits the session on the first write of the response.
type responseWriter struct {
	http.ResponseWriter
	s         *Session
	r         *http.Request
	committed bool
	failed    bool // ErrorHandler answered; the handler's output is dropped
}

func (w *responseWriter) commit() {
	if w.committed {
		return
	}
	w.committed = true
	if err := w.s.commit(w.ResponseWriter.Header()); err != nil {
		w.failed = true
		w.s.m.opts.ErrorHandler(w.ResponseWriter, w.r, err)
	}
}

func (w *responseWriter) WriteHeader(code int) {
	// Informational responses (103 Early Hints) precede the final one; the
	// session belongs with the final headers. 101 is final for the session.
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.commit()
	if w.failed {
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.commit()
	if w.failed {
		return 0, ErrCommitFailed
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher for handlers that type-assert for it.
func (w *responseWriter) Flush() {
	w.commit()
	if w.failed {
		return
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// FlushError is what http.ResponseController calls.
func (w *responseWriter) FlushError() error {
	w.commit()
	if w.failed {
		return ErrCommitFailed
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker. The session is saved first: after a
// hijack nothing more can be written through net/http.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.commit()
	if w.failed {
		return nil, nil, ErrCommitFailed
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// CloseNotify implements the deprecated http.CloseNotifier, which some
// frameworks still type-assert for (gin's Context.Stream panics without it).
func (w *responseWriter) CloseNotify() <-chan bool {
	//lint:ignore SA1019 kept for frameworks that still require it
	if cn, ok := w.ResponseWriter.(http.CloseNotifier); ok {
		return cn.CloseNotify()
	}
	ch := make(chan bool, 1)
	ctx := w.r.Context()
	go func() {
		<-ctx.Done() // net/http cancels it when the request ends
		ch <- true
	}()
	return ch
}

// Unwrap lets http.ResponseController reach the underlying writer for
// deadlines and full-duplex.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
