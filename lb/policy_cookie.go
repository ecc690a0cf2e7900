package lb

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cookiePolicy pins a client to a backend with a cookie the balancer
// inserts (roam_lb by default), like AWS's "Enable Session Stickiness"
// with a cookie expiration period. The cookie holds an opaque token for
// the backend (an HMAC of its id, never its address), the time it was
// issued and an HMAC over both; a cookie that does not verify counts as no
// cookie. The first request of a client is placed by the fallback policy.
// When the pinned backend is down, draining past its timeout, or fails the
// request, the request goes to another backend and the cookie is
// rewritten: the client stays there, also after the old backend returns.
type cookiePolicy struct {
	name         string
	expiry       time.Duration
	refreshAfter time.Duration
	suffix       string // attributes after the value, without Secure
	secure       string // "always", "never" or "auto"
	fallback     Policy
	metrics      *metrics
	tokens       []tokenEntry
	macs         sync.Pool // of hash.Hash, HMAC-SHA256 keyed by the secret
}

type tokenEntry struct {
	token [tokenLen]byte
	b     *Backend
}

const (
	tokenLen       = 8
	cookieMACLen   = 16
	cookieRawLen   = tokenLen + 4 + cookieMACLen
	cookieValueLen = (cookieRawLen*8 + 5) / 6 // unpadded base64
)

// cookieEncoding is strict so that exactly one text encodes a cookie: a
// value with altered padding bits is rejected like any other tampering.
var cookieEncoding = base64.RawURLEncoding.Strict()

// backendToken derives the opaque name a sticky cookie carries for a
// backend: an HMAC of its id, so the cookie reveals neither id nor address,
// and every balancer sharing the secret derives the same token (a client
// may land on any of them).
func backendToken(secret []byte, id string) (t [tokenLen]byte) {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("roam-lb backend\x00"))
	m.Write([]byte(id))
	copy(t[:], m.Sum(nil))
	return t
}

func newCookiePolicy(c *Config, secret []byte, all []*Backend, fallback Policy, m *metrics) *cookiePolicy {
	p := &cookiePolicy{
		name:     c.Cookie.Name,
		expiry:   c.Cookie.Expiry.D(),
		secure:   c.Cookie.Secure,
		fallback: fallback,
		metrics:  m,
	}
	// Re-issue a sliding cookie once a tenth of its lifetime has passed:
	// an active client never expires, an idle one expires between 90% and
	// 100% of the period, and most responses carry no Set-Cookie.
	p.refreshAfter = max(p.expiry/10, time.Second)
	var sb strings.Builder
	sb.WriteString("; Path=")
	sb.WriteString(c.Cookie.Path)
	if c.Cookie.Domain != "" {
		sb.WriteString("; Domain=")
		sb.WriteString(c.Cookie.Domain)
	}
	if p.expiry > 0 {
		sb.WriteString("; Max-Age=")
		sb.WriteString(strconv.Itoa(int(p.expiry / time.Second)))
	}
	if *c.Cookie.HTTPOnly {
		sb.WriteString("; HttpOnly")
	}
	switch strings.ToLower(c.Cookie.SameSite) {
	case "lax":
		sb.WriteString("; SameSite=Lax")
	case "strict":
		sb.WriteString("; SameSite=Strict")
	case "none":
		sb.WriteString("; SameSite=None")
	}
	p.suffix = sb.String()
	for _, b := range all {
		p.tokens = append(p.tokens, tokenEntry{backendToken(secret, b.id), b})
	}
	key := append([]byte(nil), secret...)
	p.macs.New = func() any { return hmac.New(sha256.New, key) }
	return p
}

// Pick returns the backend the request's cookie pins it to when that one
// is serving, and otherwise the fallback policy's choice.
func (c *cookiePolicy) Pick(p Pool, r *http.Request) *Backend {
	rs := p.rs
	if !rs.cookieRead {
		rs.cookieRead = true
		c.read(rs, r, p.now)
	}
	if b := rs.pinned; b != nil {
		if p.Serving(b) {
			return b
		}
		if !rs.breakCounted {
			rs.breakCounted = true
			reason := "down"
			switch {
			case p.tried(b):
				reason = "failed"
			case b.stateAt(p.now) == StateDraining:
				reason = "drained"
			}
			c.metrics.stickinessBreak(reason)
		}
	}
	return c.fallback.Pick(p, r)
}

// read verifies the request's cookie and records the backend it pins to.
func (c *cookiePolicy) read(rs *reqState, r *http.Request, now int64) {
	v, ok := cookieValue(r.Header, c.name)
	if !ok {
		return
	}
	tok, issued, ok := c.verify(v)
	if !ok {
		c.metrics.cookieRejected("invalid")
		return
	}
	nowS := now / int64(time.Second)
	if issued > nowS+60 {
		c.metrics.cookieRejected("invalid")
		return
	}
	if c.expiry > 0 && nowS-issued > int64(c.expiry/time.Second) {
		// The browser should have dropped it: an expired pin is no pin.
		c.metrics.cookieRejected("expired")
		return
	}
	for i := range c.tokens {
		if c.tokens[i].token == tok {
			rs.pinned, rs.pinnedIssued = c.tokens[i].b, issued
			return
		}
	}
	// A valid cookie for a backend that was removed: place it anew.
	c.metrics.stickinessBreak("removed")
}

// verify decodes and checks a cookie value. It fails on any value the
// balancer did not sign with its secret.
func (c *cookiePolicy) verify(v string) (tok [tokenLen]byte, issued int64, ok bool) {
	if len(v) != cookieValueLen {
		return tok, 0, false
	}
	var raw [cookieRawLen]byte
	if n, err := cookieEncoding.Decode(raw[:], []byte(v)); err != nil || n != cookieRawLen {
		return tok, 0, false
	}
	var want [sha256.Size]byte
	c.mac(want[:0], raw[:tokenLen+4])
	if !hmac.Equal(want[:cookieMACLen], raw[tokenLen+4:]) {
		return tok, 0, false
	}
	copy(tok[:], raw[:tokenLen])
	return tok, int64(binary.BigEndian.Uint32(raw[tokenLen:])), true
}

func (c *cookiePolicy) mac(dst, msg []byte) []byte {
	m := c.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte("roam-lb cookie\x00"))
	m.Write(msg)
	dst = m.Sum(dst)
	c.macs.Put(m)
	return dst
}

// sign returns a cookie value pinning to the backend token, issued at
// nowS (unix seconds).
func (c *cookiePolicy) sign(tok [tokenLen]byte, nowS int64) string {
	var raw [cookieRawLen]byte
	copy(raw[:], tok[:])
	binary.BigEndian.PutUint32(raw[tokenLen:], uint32(nowS))
	var sum [sha256.Size]byte
	c.mac(sum[:0], raw[:tokenLen+4])
	copy(raw[tokenLen+4:], sum[:cookieMACLen])
	return cookieEncoding.EncodeToString(raw[:])
}

// Pin sets the cookie when the request was not already pinned to b, or
// when a sliding cookie is due for re-issue.
func (c *cookiePolicy) Pin(h http.Header, r *http.Request, p Pool, b *Backend) {
	rs := p.rs
	nowS := p.now / int64(time.Second)
	if rs.pinned == b && (c.expiry <= 0 || time.Duration(nowS-rs.pinnedIssued)*time.Second < c.refreshAfter) {
		return
	}
	var tok [tokenLen]byte
	found := false
	for i := range c.tokens {
		if c.tokens[i].b == b {
			tok, found = c.tokens[i].token, true
			break
		}
	}
	if !found {
		return
	}
	v := c.name + "=" + c.sign(tok, nowS) + c.suffix
	if c.secure == "always" || (c.secure == "auto" && (r.TLS != nil || rs.forwardedHTTPS)) {
		v += "; Secure"
	}
	h["Set-Cookie"] = append(h["Set-Cookie"], v)
}
