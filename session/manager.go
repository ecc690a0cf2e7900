package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults for the zero values of Options.
const (
	DefaultCookieName    = "roam_session"
	DefaultIdleTimeout   = 30 * time.Minute
	DefaultLifetime      = 12 * time.Hour // OWASP ASVS level 2
	DefaultTouchFraction = 0.1
	DefaultMaxSize       = 64 << 10
)

// ErrEmptyPrincipal is returned by Manager.DestroyPrincipal for the empty
// principal: anonymous sessions belong to nobody.
var ErrEmptyPrincipal = errors.New("session: empty principal")

// ErrTooLarge is returned by Session.Put when the value would make the
// session's encoded size exceed Options.MaxSize. The session is unchanged.
var ErrTooLarge = errors.New("session: session too large")

// CookieOptions configures the session cookie. The zero value is the secure
// default: name roam_session, Path /, HttpOnly, Secure, SameSite=Lax, no
// Domain, and a browser-session cookie (no Max-Age).
type CookieOptions struct {
	Name   string // default DefaultCookieName
	Path   string // default "/"
	Domain string // default none: the cookie goes only to the host that set it

	// Insecure omits the Secure attribute, so the cookie also travels over
	// plain http. Only for loopback demos and tests; never in production.
	Insecure bool

	// SameSite defaults to http.SameSiteLaxMode. http.SameSiteNoneMode
	// requires Secure, so it is rejected together with Insecure.
	SameSite http.SameSite

	// Partitioned sets the CHIPS Partitioned attribute (requires Secure).
	Partitioned bool

	// Persist makes the cookie outlive the browser session: it carries a
	// Max-Age up to the session's deadline and is refreshed when the session
	// is touched.
	Persist bool
}

// Events are optional hooks the Manager calls after the fact. They run on
// the request's goroutine, so they must be quick; ctx is the request's.
// Ids passed to hooks are secrets: log a Fingerprint, not the id.
type Events struct {
	Created   func(ctx context.Context, id string)
	Destroyed func(ctx context.Context, id string)
	// Expired is best effort: it fires when a request presents an id whose
	// session the Manager finds past its idle or absolute deadline. Sessions
	// the store drops by TTL without a request arriving are not reported.
	Expired func(ctx context.Context, id string)
}

// Options configures a Manager. The zero value is usable and secure; see
// each field for its default.
type Options struct {
	Cookie CookieOptions

	// Header, when set, names a request header that carries the session id
	// instead of the cookie (for API clients). The Manager then reads the id
	// only from that header and sends a new or renewed id back in the
	// response header of the same name; a destroyed session is answered with
	// the header present and empty. No cookie is set in this mode.
	Header string

	// IdleTimeout ends a session that has seen no request for this long.
	// Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// Lifetime ends a session this long after it was created (or renewed),
	// however active it is. Default DefaultLifetime.
	Lifetime time.Duration
	// TouchFraction throttles keep-alive writes: a request that changes
	// nothing extends the idle deadline only when at least this fraction of
	// IdleTimeout has passed since the last recorded activity, so a busy
	// user costs one touch per TouchFraction×IdleTimeout instead of a write
	// per request. The idle deadline is therefore exact to within that
	// fraction. Default DefaultTouchFraction; must be in (0, 1].
	TouchFraction float64

	// MaxSize bounds the encoded size of a session (see Record.Size).
	// Default DefaultMaxSize.
	MaxSize int

	// Codec encodes attribute values. Default JSONCodec.
	Codec Codec

	// ErrorHandler answers a request whose session could not be loaded or
	// saved. Default: 503 Service Unavailable with a generic body; the cause
	// is logged, never shown to the client.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

	// Logger receives store failures and other notable events. Default
	// slog.Default(). Session ids are never logged, only fingerprints.
	Logger *slog.Logger

	Events Events

	// Now returns the current time. Default time.Now; tests set it.
	Now func() time.Time
}

// Manager loads sessions for requests and saves their changes. It is safe
// for concurrent use; create one per application with NewManager.
type Manager struct {
	store   Store
	opts    Options
	toucher Toucher // store as a Toucher, or nil
	stats   stats
}

type stats struct {
	loads, creates, updates, touches, deletes, errors atomic.Uint64
}

// Stats are counters of what a Manager has done since it was created, for
// metrics exporters.
type Stats struct {
	Loads, Creates, Updates, Touches, Deletes, Errors uint64
}

// NewManager returns a Manager that keeps sessions in store. It fills the
// defaults of opts and returns an error naming the field when an option is
// invalid.
func NewManager(store Store, opts Options) (*Manager, error) {
	if store == nil {
		return nil, errors.New("session: NewManager: store is nil")
	}
	c := &opts.Cookie
	if c.Name == "" {
		c.Name = DefaultCookieName
	}
	if !validToken(c.Name) {
		return nil, fmt.Errorf("session: Options.Cookie.Name %q is not a valid cookie name", c.Name)
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.SameSite == 0 || c.SameSite == http.SameSiteDefaultMode {
		c.SameSite = http.SameSiteLaxMode
	}
	if c.Insecure && c.SameSite == http.SameSiteNoneMode {
		return nil, errors.New("session: Options.Cookie: SameSite=None requires Secure, but Insecure is set")
	}
	if c.Insecure && c.Partitioned {
		return nil, errors.New("session: Options.Cookie: Partitioned requires Secure, but Insecure is set")
	}
	// Browsers silently drop cookies whose prefix promises what the
	// attributes do not deliver, so users could never log in: refuse them.
	if strings.HasPrefix(c.Name, "__Secure-") || strings.HasPrefix(c.Name, "__Host-") {
		if c.Insecure {
			return nil, fmt.Errorf("session: Options.Cookie.Name %q requires Secure, but Insecure is set", c.Name)
		}
	}
	if strings.HasPrefix(c.Name, "__Host-") && (c.Domain != "" || c.Path != "/") {
		return nil, fmt.Errorf("session: Options.Cookie.Name %q requires Path=/ and no Domain", c.Name)
	}
	if opts.Header != "" && !validToken(opts.Header) {
		return nil, fmt.Errorf("session: Options.Header %q is not a valid header name", opts.Header)
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Lifetime == 0 {
		opts.Lifetime = DefaultLifetime
	}
	if opts.IdleTimeout < 0 || opts.Lifetime < 0 {
		return nil, errors.New("session: Options.IdleTimeout and Options.Lifetime must not be negative")
	}
	if opts.TouchFraction == 0 {
		opts.TouchFraction = DefaultTouchFraction
	}
	if opts.TouchFraction < 0 || opts.TouchFraction > 1 {
		return nil, fmt.Errorf("session: Options.TouchFraction %v is not in (0, 1]", opts.TouchFraction)
	}
	if opts.MaxSize == 0 {
		opts.MaxSize = DefaultMaxSize
	}
	if opts.MaxSize < 0 {
		return nil, errors.New("session: Options.MaxSize must not be negative")
	}
	if opts.Codec == nil {
		opts.Codec = JSONCodec{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Manager{store: store, opts: opts}
	if opts.ErrorHandler == nil {
		m.opts.ErrorHandler = m.defaultErrorHandler
	}
	m.toucher, _ = store.(Toucher)
	return m, nil
}

// Store returns the store the Manager keeps sessions in.
func (m *Manager) Store() Store { return m.store }

// Options returns the Manager's options with every default filled in.
func (m *Manager) Options() Options { return m.opts }

// Stats returns a snapshot of the Manager's counters.
func (m *Manager) Stats() Stats {
	return Stats{
		Loads:   m.stats.loads.Load(),
		Creates: m.stats.creates.Load(),
		Updates: m.stats.updates.Load(),
		Touches: m.stats.touches.Load(),
		Deletes: m.stats.deletes.Load(),
		Errors:  m.stats.errors.Load(),
	}
}

// DestroyPrincipal destroys every session of principal (log out all of a
// user's devices) and reports how many it destroyed. It returns
// ErrNotSupported when the store keeps no principal index, and
// ErrEmptyPrincipal for "" (so a caller bug cannot log out every anonymous
// visitor).
func (m *Manager) DestroyPrincipal(ctx context.Context, principal string) (int, error) {
	if principal == "" {
		return 0, fmt.Errorf("destroy sessions of principal: %w", ErrEmptyPrincipal)
	}
	pi, ok := m.store.(PrincipalIndex)
	if !ok {
		return 0, fmt.Errorf("destroy sessions of principal: %w", ErrNotSupported)
	}
	n, err := pi.DeleteByPrincipal(ctx, principal)
	if err != nil {
		return n, fmt.Errorf("destroy sessions of principal: %w", err)
	}
	m.stats.deletes.Add(uint64(n))
	return n, nil
}

// expiresAt is the store deadline of a session created at created and last
// active at touched: whichever of the idle and absolute deadlines is first.
func (m *Manager) expiresAt(created, touched time.Time) time.Time {
	idle := touched.Add(m.opts.IdleTimeout)
	abs := created.Add(m.opts.Lifetime)
	if abs.Before(idle) {
		return abs
	}
	return idle
}

// expired reports whether rec is past any of its deadlines at now.
func (m *Manager) expired(rec *Record, now time.Time) bool {
	return !now.Before(m.expiresAt(rec.Created, rec.Touched)) ||
		(!rec.Expires.IsZero() && !now.Before(rec.Expires))
}

func (m *Manager) defaultErrorHandler(w http.ResponseWriter, r *http.Request, err error) {
	m.opts.Logger.LogAttrs(r.Context(), slog.LevelError, "session store failed",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte("Service Unavailable\n"))
}

// Fingerprint returns a short, non-reversible tag for a session id, for
// logs and traces: enough to correlate lines, useless to hijack a session.
func Fingerprint(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:6])
}
