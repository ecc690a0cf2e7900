// Package adminhost guards admin listeners against DNS rebinding: it lets a
// request through only when its Host names the listener as a local client
// reaches it. The balancer and the demo wrap their admin listeners in it.
package adminhost

import (
	"net"
	"net/http"
	"strings"
)

// misdirected is the whole body of a refused request. It does not echo the
// Host: nothing the client sent is reflected.
const misdirected = "misdirected request: this admin listener answers only to localhost, loopback addresses and its own address\n"

// RequireLocalHost returns a handler that passes a request to next only
// when its Host header names the listener as a local client reaches it:
// "localhost", a loopback IP literal (127.0.0.0/8, ::1), the IP address the
// connection arrived on, or the host part of one of addrs (the listener's
// configured and bound addresses, which may be names), each with or
// without a port. Every other request, an empty Host included, is answered
// 421 Misdirected Request with a short plain-text body, and next never
// sees it.
//
// This stops DNS rebinding. A page on evil.example that re-points its own
// name at 127.0.0.1 reaches a loopback listener from the visitor's browser
// with Host: evil.example:PORT and an Origin of http://evil.example:PORT;
// Origin and Host agree, so http.CrossOriginProtection lets it through. The Host is the one thing the
// page cannot choose, so wrap the whole admin listener in this, reads as
// well as actions.
func RequireLocalHost(next http.Handler, addrs ...string) http.Handler {
	var names []string
	for _, a := range addrs {
		h := hostOnly(a)
		// An unspecified bind (":8081", "0.0.0.0:8081") names no host a
		// client would type; the connection's own address covers it.
		if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
			continue
		}
		names = append(names, h)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !localHost(r, names) {
			h := w.Header()
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusMisdirectedRequest)
			w.Write([]byte(misdirected))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// localHost reports whether r's Host is one RequireLocalHost lets through.
func localHost(r *http.Request, names []string) bool {
	host := hostOnly(r.Host)
	if host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.IsLoopback() {
			return true
		}
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if ta, ok := la.(*net.TCPAddr); ok && ta.IP.Equal(ip) && !ip.IsUnspecified() {
				return true
			}
		}
	}
	for _, n := range names {
		if host == n {
			return true
		}
		if a, b := net.ParseIP(host), net.ParseIP(n); a != nil && b != nil && a.Equal(b) {
			return true
		}
	}
	return false
}

// hostOnly returns the host of a Host header or address, without port,
// brackets or a trailing dot, in lower case: "[::1]:8081" is "::1",
// "LocalHost.:80" is "localhost". It returns "" when the port is not a
// number ("localhost:1@evil.example"), so that nothing after the last
// colon can smuggle in another name.
func hostOnly(hostport string) string {
	h := hostport
	if host, port, err := net.SplitHostPort(hostport); err == nil {
		if strings.Trim(port, "0123456789") != "" {
			return ""
		}
		h = host
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}
