package lb

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

var policyNames = []string{"round_robin", "least_conn", "random_two", "ip_hash", "cookie", "hash_cookie", "owner"}

func knownPolicy(name string) bool {
	for _, n := range policyNames {
		if n == name {
			return true
		}
	}
	return false
}

// Validate rejects a configuration that cannot work, naming the field:
// "backends[1].url: missing scheme". It expects Provision to have run.
// All problems are reported together, one per line.
func (c *Config) Validate() error {
	var errs []string
	bad := func(field, format string, a ...any) {
		errs = append(errs, field+": "+fmt.Sprintf(format, a...))
	}
	if !c.provisioned {
		bad("config", "Provision must run before Validate")
	}
	checkAddr := func(field, v string) {
		if _, port, err := net.SplitHostPort(v); err != nil {
			bad(field, "%q is not host:port", v)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			bad(field, "%q has no valid port", v)
		}
	}
	checkAddr("listen", c.Listen)
	checkAddr("admin", c.Admin)
	if c.Listen == c.Admin && !strings.HasSuffix(c.Listen, ":0") {
		bad("admin", "must differ from listen (%s): the admin API is kept off the traffic port", c.Listen)
	}
	if !knownPolicy(c.Policy) {
		bad("policy", "unknown policy %q (want one of %s)", c.Policy, strings.Join(policyNames, ", "))
	}
	switch c.Fallback {
	case "round_robin", "least_conn", "random_two", "ip_hash":
	default:
		bad("fallback", "%q cannot place a first request (want round_robin, least_conn, random_two or ip_hash)", c.Fallback)
	}
	if !validCookieName(c.SessionCookie) {
		bad("session_cookie", "%q is not a valid cookie name", c.SessionCookie)
	}
	if !validCookieName(c.Cookie.Name) {
		bad("cookie.name", "%q is not a valid cookie name", c.Cookie.Name)
	}
	if c.Cookie.Name == c.SessionCookie {
		bad("cookie.name", "%q is the application's session cookie (session_cookie); the balancer's cookie needs its own name or it would replace the session", c.Cookie.Name)
	}
	switch c.Cookie.Secure {
	case "auto", "always", "never":
	default:
		bad("cookie.secure", "%q: want auto, always or never", c.Cookie.Secure)
	}
	switch strings.ToLower(c.Cookie.SameSite) {
	case "lax", "strict", "none", "off":
		if strings.EqualFold(c.Cookie.SameSite, "none") && c.Cookie.Secure == "never" {
			bad("cookie.same_site", "none requires a Secure cookie (browsers drop it otherwise); set cookie.secure to auto or always")
		}
	default:
		bad("cookie.same_site", "%q: want lax, strict, none or off", c.Cookie.SameSite)
	}
	if !strings.HasPrefix(c.Cookie.Path, "/") {
		bad("cookie.path", "%q must start with /", c.Cookie.Path)
	}
	if c.Secret != "" && c.SecretFile != "" {
		bad("secret", "set secret or secret_file, not both")
	}
	if (c.Secret != "" || c.SecretFile != "") && len(c.secretKey) < 16 {
		bad("secret", "too short (%d bytes); use at least 16 random bytes", len(c.secretKey))
	}
	switch c.IPHash.Form {
	case "consistent", "modulo":
	default:
		bad("ip_hash.form", "%q: want consistent or modulo", c.IPHash.Form)
	}
	if !strings.HasPrefix(c.Health.Path, "/") {
		bad("health.path", "%q must start with /", c.Health.Path)
	}
	if c.Health.Rise < 1 {
		bad("health.rise", "must be at least 1, got %d", c.Health.Rise)
	}
	if c.Health.Fall < 1 {
		bad("health.fall", "must be at least 1, got %d", c.Health.Fall)
	}
	if c.Health.PassiveFails < -1 {
		bad("health.passive_fails", "must be -1 (off) or more, got %d", c.Health.PassiveFails)
	}
	if c.Health.Timeout.IsOff() && !c.Health.Interval.IsOff() {
		bad("health.timeout", "a health check needs a timeout")
	}
	if c.Retries.Max < -1 {
		bad("retries.max", "must be -1 (off) or more, got %d", c.Retries.Max)
	}
	if c.Retries.BudgetRatio < 0 || c.Retries.BudgetRatio > 1 {
		bad("retries.budget_ratio", "must be within [0, 1], got %v", c.Retries.BudgetRatio)
	}
	if c.Retries.BudgetMinPerSecond < 0 {
		bad("retries.budget_min_per_second", "must not be negative")
	}
	for i, s := range c.Retries.OnStatus {
		if s < 500 || s > 599 {
			bad(fmt.Sprintf("retries.on_status[%d]", i), "%d is not a 5xx status", s)
		}
	}
	if c.Timeouts.Connect.IsOff() {
		bad("timeouts.connect", "dialing a backend needs a timeout")
	}
	if c.Timeouts.ReadHeader.IsOff() {
		bad("timeouts.read_header", "must be set: without it one slow client holds a connection forever (slowloris)")
	}
	if c.Limits.MaxHeaderBytes < 1024 {
		bad("limits.max_header_bytes", "must be at least 1024, got %d", c.Limits.MaxHeaderBytes)
	}
	if c.Limits.MaxBodyBytes < -1 {
		bad("limits.max_body_bytes", "must be -1 (unlimited) or more")
	}
	if c.Pool.MaxIdlePerBackend < 1 {
		bad("pool.max_idle_per_backend", "must be at least 1")
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		bad("tls", "cert and key must be set together")
	}
	if len(c.Backends) == 0 {
		bad("backends", "at least one backend is needed")
	}
	seenID := map[string]int{}
	seenURL := map[string]int{}
	for i, b := range c.Backends {
		f := fmt.Sprintf("backends[%d]", i)
		if b.ID == "" {
			bad(f+".id", "missing")
		} else if j, dup := seenID[b.ID]; dup {
			bad(f+".id", "%q is also backends[%d].id", b.ID, j)
		} else if !validID(b.ID) {
			bad(f+".id", "%q: use letters, digits, '-', '_' and '.' only", b.ID)
		} else {
			seenID[b.ID] = i
		}
		if _, err := parseBackendURL(b.URL); err != nil {
			bad(f+".url", "%v", err)
		} else if j, dup := seenURL[b.URL]; dup {
			bad(f+".url", "%q is also backends[%d].url", b.URL, j)
		} else {
			seenURL[b.URL] = i
		}
		if b.PID < 0 {
			bad(f+".pid", "must not be negative")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrConfig, strings.Join(errs, "\n  "))
	}
	return nil
}

// parseBackendURL checks a backend URL and returns it parsed.
func parseBackendURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("missing")
	}
	if !strings.Contains(s, "://") {
		return nil, fmt.Errorf("%q: missing scheme (want http://host:port)", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%q does not parse: %v", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q: missing host", s)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("%q: missing port", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%q: a backend URL takes no query, fragment or credentials", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

func validID(s string) bool {
	if len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// validCookieName reports whether s is an RFC 6265 token.
func validCookieName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}
