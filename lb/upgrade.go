package lb

import (
	"io"
	"net/http"
	"strings"
)

// serveUpgrade completes a protocol switch (WebSocket) the backend
// accepted: it hands the backend's 101 to the client, then copies bytes
// both ways until either side closes. The connection counts as an active
// request of the backend while it lasts (least_conn sees it), and it is
// closed when the balancer's drain timeout ends.
func (l *LB) serveUpgrade(w http.ResponseWriter, r *http.Request, resp *http.Response, b *Backend, rt *runtime, pool Pool, reqUp string) {
	respUp := upgradeType(resp.Header)
	backConn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok || !strings.EqualFold(reqUp, respUp) {
		resp.Body.Close()
		l.log.Warn("backend switched protocols badly", "backend", b.id, "asked", reqUp, "got", respUp)
		l.fail(w, http.StatusBadGateway, "bad_upgrade")
		return
	}
	defer backConn.Close()
	removeHopHeaders(resp.Header)
	resp.Header["Connection"] = valUpgrade
	resp.Header["Upgrade"] = []string{respUp}
	if rt.pinner != nil {
		rt.pinner.Pin(resp.Header, r, pool, b)
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		l.log.Warn("cannot take over the client connection for an upgrade", "err", err)
		l.fail(w, http.StatusInternalServerError, "hijack")
		return
	}
	defer conn.Close()
	if !l.trackConn(conn, true) {
		return // shutting down
	}
	defer l.trackConn(conn, false)
	b.requests.Add(1)
	b.codes[http.StatusSwitchingProtocols].Add(1)

	resp.Body = nil
	if err := resp.Write(brw); err != nil {
		return
	}
	if err := brw.Flush(); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		// Bytes the client sent after its request are already in brw.
		io.Copy(backConn, brw)
		done <- struct{}{}
	}()
	go func() {
		io.Copy(conn, backConn)
		done <- struct{}{}
	}()
	// When either side ends the session, end it for the other one too:
	// the backend's side of an upgraded connection cannot be half-closed
	// through the transport.
	<-done
	conn.Close()
	backConn.Close()
	<-done
}
