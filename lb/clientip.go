package lb

import (
	"net/http"
	"net/netip"
	"strings"
)

// peer returns the socket peer's address (without port) and whether it is
// a trusted proxy.
func (rt *runtime) peer(r *http.Request) (string, bool) {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if len(rt.trusted) == 0 {
		return host, false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host, false
	}
	return host, rt.isTrusted(a)
}

func (rt *runtime) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range rt.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedClient returns the client address a trusted peer reports: the
// rightmost X-Forwarded-For entry that is not itself a trusted proxy (the
// entries left of it were written by the client and prove nothing). When
// every entry is trusted the leftmost is the client; an entry that is not
// an address stops the walk at the last good one.
func (rt *runtime) forwardedClient(h http.Header, peer string) string {
	vals := h["X-Forwarded-For"]
	client := peer
	for i := len(vals) - 1; i >= 0; i-- {
		v := vals[i]
		for v != "" {
			var e string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				e, v = v[j+1:], v[:j]
			} else {
				e, v = v, ""
			}
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			a, err := netip.ParseAddr(e)
			if err != nil {
				return client
			}
			client = e
			if !rt.isTrusted(a) {
				return client
			}
		}
	}
	return client
}
