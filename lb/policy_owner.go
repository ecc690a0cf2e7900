package lb

import "net/http"

// owner sends each request to the server that owns its session in the
// cluster store (mode backup): the session cookie's value is ranked over
// the backends' ids with the same rendezvous hashing the cluster uses to
// place it, and the first serving backend wins, so the primary while it
// lives, then the backup that already holds a copy. Requests without a
// session cookie are placed by the fallback policy. Backend ids must equal
// the nodes' --id.
type owner struct {
	name     string
	fallback Policy
}

// Pick returns the session's primary, or the first serving backup.
func (o *owner) Pick(p Pool, r *http.Request) *Backend {
	key, ok := cookieValue(r.Header, o.name)
	if !ok || key == "" {
		return o.fallback.Pick(p, r)
	}
	best, _ := rendezvous(p, key)
	return best
}
