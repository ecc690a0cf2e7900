package lb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ErrConfig is wrapped by every error that Parse, Load, Provision and
// Validate return, so that callers can tell a bad configuration from an
// I/O or runtime failure.
var ErrConfig = errors.New("lb: invalid config")

// Off is the Duration value that switches a timed feature off (written
// "off" in YAML). A zero Duration means "use the default" instead.
const Off Duration = -1

// Duration is a time.Duration that reads from YAML as a Go duration string
// ("1.5s", "30m") or as "off". Zero means the default; Off disables.
type Duration time.Duration

// UnmarshalYAML accepts a Go duration string, "off", or a bare 0.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	switch strings.ToLower(s) {
	case "off", "none", "disabled", "false":
		*d = Off
		return nil
	case "0", "":
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 1s or 5m, nor off", n.Line, s)
	}
	if v < 0 {
		return fmt.Errorf("line %d: negative duration %q (write off to disable)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration back in the form UnmarshalYAML reads.
func (d Duration) MarshalYAML() (any, error) {
	if d == Off {
		return "off", nil
	}
	return time.Duration(d).String(), nil
}

// D returns the duration as a time.Duration; Off reads as 0.
func (d Duration) D() time.Duration {
	if d < 0 {
		return 0
	}
	return time.Duration(d)
}

// IsOff reports whether the feature the duration times is disabled.
func (d Duration) IsOff() bool { return d < 0 }

// Config is the balancer's configuration, read once from YAML (Parse or
// Load), completed with defaults (Provision) and checked (Validate) before
// anything serves traffic. The zero value plus a list of Backends is a
// working cookie-sticky balancer on 127.0.0.1:8080.
type Config struct {
	// Listen is the traffic address. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// Admin is the admin API address (/api/nodes, /metrics, /healthz).
	// Default 127.0.0.1:8081; it is meant to stay on loopback.
	Admin string `yaml:"admin"`
	// AdminHosts are extra names the admin listener answers to (a Service
	// DNS name in Kubernetes, say). It always answers to localhost, loopback
	// addresses and the address a connection arrived on; a request with any
	// other Host gets 421, which stops DNS-rebinding pages in a browser on
	// the same machine from driving the admin API.
	AdminHosts []string `yaml:"admin_hosts"`
	// Policy names the balancing policy: round_robin, least_conn,
	// random_two, ip_hash, cookie (default), hash_cookie or owner.
	Policy string `yaml:"policy"`
	// Fallback is the policy that places requests the main policy has no
	// key for: the first request of a cookie policy, a request without a
	// session cookie under hash_cookie or owner. Default least_conn.
	Fallback string `yaml:"fallback"`
	// SessionCookie is the application's session cookie, read by
	// hash_cookie and owner. Default roam_session.
	SessionCookie string `yaml:"session_cookie"`
	// Cookie configures the cookie policy's inserted cookie.
	Cookie CookieConfig `yaml:"cookie"`
	// Secret signs the sticky cookie. Several balancers in front of the
	// same backends must share it. When both Secret and SecretFile are
	// empty a random secret is generated at start (and a warning logged).
	Secret string `yaml:"secret"`
	// SecretFile names a file holding the secret (surrounding whitespace
	// is trimmed).
	SecretFile string `yaml:"secret_file"`
	// IPHash configures the ip_hash policy.
	IPHash IPHashConfig `yaml:"ip_hash"`
	// RememberMoves is how long ip_hash and hash_cookie remember that a
	// key was moved off a dead backend, so that the key stays where its
	// session now lives when the old backend returns. Default 30m; off
	// lets keys move back as soon as their backend is up again.
	RememberMoves Duration `yaml:"remember_moves"`
	// Health configures active and passive health checking.
	Health HealthConfig `yaml:"health"`
	// Retries configures retrying failed attempts on another backend.
	Retries RetryConfig `yaml:"retries"`
	// Timeouts bound each phase of a request.
	Timeouts TimeoutConfig `yaml:"timeouts"`
	// Limits bound request sizes.
	Limits LimitConfig `yaml:"limits"`
	// Pool tunes the keep-alive connections to backends.
	Pool PoolConfig `yaml:"pool"`
	// TrustedProxies lists addresses or CIDR prefixes whose
	// X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host are
	// believed. From anyone else those headers are replaced.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TLS, when Cert and Key are set, terminates TLS on Listen.
	TLS TLSConfig `yaml:"tls"`
	// DrainTimeout is how long draining lasts: for a backend put into
	// draining, how long its pinned clients keep reaching it; for the
	// balancer on SIGTERM, how long in-flight requests may finish.
	// Default 30s.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// Backends are the servers to balance over.
	Backends []BackendConfig `yaml:"backends"`
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin
	// listener, for profiling the balancer under load. Default off.
	Pprof bool `yaml:"pprof"`

	// Logger receives the balancer's logs; default slog.Default().
	Logger *slog.Logger `yaml:"-"`

	// Filled by Provision.
	trusted     []netip.Prefix
	secretKey   []byte
	provisioned bool
}

// CookieConfig configures the cookie policy's own cookie.
type CookieConfig struct {
	// Name of the inserted cookie. Default roam_lb. It must differ from
	// SessionCookie: the balancer never overwrites the application's cookie.
	Name string `yaml:"name"`
	// Expiry is the cookie's lifetime, sliding: each response more than a
	// tenth of Expiry after the cookie was issued re-issues it. Zero (the
	// default) makes a browser-session cookie without Max-Age.
	Expiry Duration `yaml:"expiry"`
	// Secure sets the Secure attribute: "auto" (default: when serving
	// TLS), "always" or "never".
	Secure string `yaml:"secure"`
	// HTTPOnly sets HttpOnly; default true.
	HTTPOnly *bool `yaml:"http_only"`
	// SameSite is lax (default), strict, none or off (attribute omitted).
	SameSite string `yaml:"same_site"`
	// Path of the cookie; default "/".
	Path string `yaml:"path"`
	// Domain of the cookie; default none (host-only).
	Domain string `yaml:"domain"`
}

// IPHashConfig configures ip_hash.
type IPHashConfig struct {
	// Form is consistent (default: rendezvous hashing, about 1/(N+1) of
	// clients move when a server is added) or modulo (the classic
	// hash mod N: most clients move when N changes).
	Form string `yaml:"form"`
}

// HealthConfig configures health checking.
type HealthConfig struct {
	// Path is requested with GET on each backend; a 2xx or 3xx answer
	// counts as healthy. Default /healthz.
	Path string `yaml:"path"`
	// Interval between active checks; default 1s; off disables active
	// checks (passive ejection still applies).
	Interval Duration `yaml:"interval"`
	// Timeout of one check; default 1s. Checks of one backend never
	// overlap: the next starts Interval after the previous ended.
	Timeout Duration `yaml:"timeout"`
	// Rise is how many consecutive passing checks bring a down backend
	// up; default 2.
	Rise int `yaml:"rise"`
	// Fall is how many consecutive failing checks take an up backend
	// down; default 2.
	Fall int `yaml:"fall"`
	// PassiveFails is how many consecutive failed proxied attempts
	// (connection refused or reset, timeout) eject a backend; default 3;
	// -1 disables passive ejection.
	PassiveFails int `yaml:"passive_fails"`
	// PassiveCoolDown is how long an ejected backend gets no traffic
	// before it is tried again; default 10s.
	PassiveCoolDown Duration `yaml:"passive_cool_down"`
}

// RetryConfig bounds retries.
type RetryConfig struct {
	// Max is the number of further backends one request may try after
	// its first attempt failed; default 2; -1 disables retries.
	Max int `yaml:"max"`
	// BudgetRatio caps retries at this share of recent requests, so a
	// broken cluster is not hammered; default 0.2.
	BudgetRatio float64 `yaml:"budget_ratio"`
	// BudgetMinPerSecond retries are always allowed per second whatever
	// the ratio; default 10.
	BudgetMinPerSecond int `yaml:"budget_min_per_second"`
	// OnStatus lists backend status codes after which an idempotent
	// request with no body is retried elsewhere; default [502, 503].
	OnStatus []int `yaml:"on_status"`
}

// TimeoutConfig bounds each phase of a request.
type TimeoutConfig struct {
	// Connect bounds dialing a backend; default 2s.
	Connect Duration `yaml:"connect"`
	// Backend bounds the wait for a backend's response headers after the
	// request was sent; default 60s. Streaming bodies are not bounded.
	Backend Duration `yaml:"backend"`
	// ReadHeader bounds reading a client's request headers (slowloris);
	// default 10s.
	ReadHeader Duration `yaml:"read_header"`
	// ReadBody bounds reading a whole request, body included; default
	// off (large uploads).
	ReadBody Duration `yaml:"read_body"`
	// Idle closes client keep-alive connections idle this long; default 60s.
	Idle Duration `yaml:"idle"`
	// Write bounds writing a response; default off (streaming).
	Write Duration `yaml:"write"`
}

// LimitConfig bounds request sizes.
type LimitConfig struct {
	// MaxHeaderBytes caps the request line and headers; larger requests
	// get 431. Default 64 KiB.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxBodyBytes caps a request body; larger bodies get 413. Default
	// 32 MiB; -1 is unlimited.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// PoolConfig tunes the backend connection pool.
type PoolConfig struct {
	// MaxIdlePerBackend idle keep-alive connections are kept per backend;
	// default 512. (The standard library's default of 2 costs about 40%
	// of throughput under load.)
	MaxIdlePerBackend int `yaml:"max_idle_per_backend"`
	// IdleTimeout closes idle backend connections; default 30s.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// TLSConfig names certificate files for TLS termination. Both files are
// read again on reload.
type TLSConfig struct {
	// Cert is a PEM file with the certificate chain, leaf first.
	Cert string `yaml:"cert"`
	// Key is the PEM file with the certificate's private key.
	Key string `yaml:"key"`
}

// BackendConfig describes one backend server.
type BackendConfig struct {
	// ID names the backend. Under the owner policy it must equal the
	// node's --id, the name placement ranks.
	ID string `yaml:"id"`
	// URL is the backend's base URL, http://host:port (a path prefix is
	// allowed and prepended to every request path).
	URL string `yaml:"url"`
	// PID of the backend process when known (shown in /api/nodes).
	PID int `yaml:"pid"`
}

// Parse reads a YAML configuration. Unknown keys are an error (a typo
// must not silently fall back to a default). The result is not yet
// provisioned or validated.
func Parse(data []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) { // an empty file is an empty config
			return &c, nil
		}
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return &c, nil
}

// Load reads, provisions and validates the configuration in path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("lb: read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Provision(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Provision fills defaults for every unset field and reads the secret
// file. It fails only when the secret file cannot be read or a trusted
// proxy entry does not parse; all other checking is Validate's.
func (c *Config) Provision() error {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defD := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	defI := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	def(&c.Listen, "127.0.0.1:8080")
	def(&c.Admin, "127.0.0.1:8081")
	def(&c.Policy, "cookie")
	def(&c.Fallback, "least_conn")
	def(&c.SessionCookie, "roam_session")
	def(&c.Cookie.Name, "roam_lb")
	def(&c.Cookie.Secure, "auto")
	def(&c.Cookie.SameSite, "lax")
	def(&c.Cookie.Path, "/")
	if c.Cookie.HTTPOnly == nil {
		t := true
		c.Cookie.HTTPOnly = &t
	}
	def(&c.IPHash.Form, "consistent")
	defD(&c.RememberMoves, 30*time.Minute)
	def(&c.Health.Path, "/healthz")
	defD(&c.Health.Interval, time.Second)
	defD(&c.Health.Timeout, time.Second)
	defI(&c.Health.Rise, 2)
	defI(&c.Health.Fall, 2)
	defI(&c.Health.PassiveFails, 3)
	defD(&c.Health.PassiveCoolDown, 10*time.Second)
	defI(&c.Retries.Max, 2)
	if c.Retries.BudgetRatio == 0 {
		c.Retries.BudgetRatio = 0.2
	}
	defI(&c.Retries.BudgetMinPerSecond, 10)
	if c.Retries.OnStatus == nil {
		c.Retries.OnStatus = []int{502, 503}
	}
	defD(&c.Timeouts.Connect, 2*time.Second)
	defD(&c.Timeouts.Backend, 60*time.Second)
	defD(&c.Timeouts.ReadHeader, 10*time.Second)
	defD(&c.Timeouts.Idle, 60*time.Second)
	if c.Timeouts.ReadBody == 0 {
		c.Timeouts.ReadBody = Off
	}
	if c.Timeouts.Write == 0 {
		c.Timeouts.Write = Off
	}
	defI(&c.Limits.MaxHeaderBytes, 64<<10)
	if c.Limits.MaxBodyBytes == 0 {
		c.Limits.MaxBodyBytes = 32 << 20
	}
	defI(&c.Pool.MaxIdlePerBackend, 512)
	// Below the usual backend keep-alive timeouts (nginx 75s, many Go
	// servers 60s+), so the balancer closes an idle connection before the
	// backend does and rarely meets one closed under its feet.
	defD(&c.Pool.IdleTimeout, 30*time.Second)
	defD(&c.DrainTimeout, 30*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}

	c.trusted = c.trusted[:0]
	for i, s := range c.TrustedProxies {
		p, err := parsePrefix(s)
		if err != nil {
			return fmt.Errorf("%w: trusted_proxies[%d]: %v", ErrConfig, i, err)
		}
		c.trusted = append(c.trusted, p)
	}
	switch {
	case c.Secret != "":
		c.secretKey = []byte(c.Secret)
	case c.SecretFile != "":
		b, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return fmt.Errorf("%w: secret_file: %v", ErrConfig, err)
		}
		c.secretKey = bytes.TrimSpace(b)
	}
	c.provisioned = true
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
