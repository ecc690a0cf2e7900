package session

import (
	"net/http"
	"net/textproto"
	"strings"
	"time"
)

// noStore keeps shared caches from serving a response that carries a
// session id in header vary to another client.
func noStore(h http.Header, vary string) {
	h.Add("Vary", vary)
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
	}
}

// validToken reports whether name is an RFC 7230 token, the syntax of both
// cookie names (RFC 6265) and header field names.
func validToken(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || c == '=' || c == ';' || c == ',' || c == '"' || c == '\\' ||
			c == '(' || c == ')' || c == '<' || c == '>' || c == '@' || c == ':' || c == '/' ||
			c == '[' || c == ']' || c == '?' || c == '{' || c == '}' {
			return false
		}
	}
	return true
}

// clientID returns the first well-formed session id the request presents,
// or "". Malformed values are dropped here, before any store I/O; with
// several cookies of the session's name (a sibling subdomain can plant one)
// the first well-formed one is tried.
func (m *Manager) clientID(r *http.Request) string {
	if m.opts.Header != "" {
		id, _ := ParseID(r.Header.Get(m.opts.Header))
		return id
	}
	// A scan of the Cookie headers for one name, rather than
	// r.CookiesNamed: it allocates nothing, and this runs on every request
	// that touches its session.
	name := m.opts.Cookie.Name
	for _, line := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			part = textproto.TrimString(part)
			v, ok := strings.CutPrefix(part, name)
			if !ok || len(v) == 0 || v[0] != '=' {
				continue
			}
			v = v[1:]
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1] // RFC 6265 allows a quoted cookie-value
			}
			if id, err := ParseID(v); err == nil {
				return id
			}
		}
	}
	return ""
}

// setID sends id to the client: a cookie, or the configured header.
func (m *Manager) setID(h http.Header, id string, expires time.Time) {
	if m.opts.Header != "" {
		h.Set(m.opts.Header, id)
		noStore(h, m.opts.Header)
		return
	}
	c := m.cookie(id)
	if m.opts.Cookie.Persist {
		c.MaxAge = max(1, int(expires.Sub(m.opts.Now()).Seconds()))
	}
	setCookie(h, c)
}

// clearID tells the client to forget its id.
func (m *Manager) clearID(h http.Header) {
	if m.opts.Header != "" {
		h.Set(m.opts.Header, "")
		noStore(h, m.opts.Header)
		return
	}
	c := m.cookie("")
	c.MaxAge = -1
	setCookie(h, c)
}

func (m *Manager) cookie(value string) *http.Cookie {
	o := &m.opts.Cookie
	return &http.Cookie{
		Name:        o.Name,
		Value:       value,
		Path:        o.Path,
		Domain:      o.Domain,
		Secure:      !o.Insecure,
		HttpOnly:    true,
		SameSite:    o.SameSite,
		Partitioned: o.Partitioned,
	}
}

// setCookie replaces any Set-Cookie of the same name already on h, so a
// session renewed and saved in one request sends the client one value.
func setCookie(h http.Header, c *http.Cookie) {
	v := c.String()
	if v == "" {
		return
	}
	prefix := c.Name + "="
	lines := h["Set-Cookie"]
	for i, l := range lines {
		if len(l) >= len(prefix) && l[:len(prefix)] == prefix {
			lines[i] = v
			return
		}
	}
	h.Add("Set-Cookie", v)
	// A response that sets a session cookie must not be cached by shared
	// caches, or one user's cookie is served to the next.
	h.Add("Vary", "Cookie")
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", `no-cache="Set-Cookie"`)
	}
}
