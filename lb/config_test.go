package lb

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigParseProvisionValidate(t *testing.T) {
	c, err := Parse([]byte(`
listen: 127.0.0.1:9080
policy: cookie
cookie: {expiry: 30m, same_site: strict}
health: {interval: 500ms, passive_cool_down: off}
remember_moves: off
backends:
  - {id: n1, url: "http://127.0.0.1:9001"}
  - {id: n2, url: "http://127.0.0.1:9002/app/"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Provision(); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Admin != "127.0.0.1:8081" || c.Fallback != "least_conn" || c.SessionCookie != "roam_session" || c.Cookie.Name != "roam_lb" {
		t.Errorf("defaults not filled: %+v", c)
	}
	if c.Cookie.Expiry.D() != 30*time.Minute || c.Health.Interval.D() != 500*time.Millisecond || c.Health.Timeout.D() != time.Second {
		t.Errorf("durations: expiry %v interval %v timeout %v", c.Cookie.Expiry.D(), c.Health.Interval.D(), c.Health.Timeout.D())
	}
	if !c.RememberMoves.IsOff() || !c.Health.PassiveCoolDown.IsOff() {
		t.Errorf("off not kept: %v %v", c.RememberMoves, c.Health.PassiveCoolDown)
	}
	if *c.Cookie.HTTPOnly != true || c.Cookie.SameSite != "strict" {
		t.Errorf("cookie options: %+v", c.Cookie)
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`backends: [{id: a, url: "http://127.0.0.1:1"}, {id: b, url: "127.0.0.1:2"}]`, "backends[1].url: \"127.0.0.1:2\": missing scheme"},
		{`backends: [{id: a, url: "http://127.0.0.1"}]`, "backends[0].url: \"http://127.0.0.1\": missing port"},
		{`backends: [{id: a, url: "http://127.0.0.1:1"}, {id: a, url: "http://127.0.0.1:2"}]`, "backends[1].id: \"a\" is also backends[0].id"},
		{`backends: []`, "backends: at least one backend"},
		{`{policy: sticky, backends: [{id: a, url: "http://127.0.0.1:1"}]}`, "policy: unknown policy \"sticky\""},
		{`{cookie: {name: roam_session}, backends: [{id: a, url: "http://127.0.0.1:1"}]}`, "cookie.name: \"roam_session\" is the application's session cookie"},
		{`{session_cookie: sid, cookie: {name: sid}, backends: [{id: a, url: "http://127.0.0.1:1"}]}`, "cookie.name: \"sid\" is the application's session cookie"},
		{`{secret: short, backends: [{id: a, url: "http://127.0.0.1:1"}]}`, "secret: too short"},
		{`{health: {rise: -1}, backends: [{id: a, url: "http://127.0.0.1:1"}]}`, "health.rise: must be at least 1"},
		{`{trusted_proxies: [nonsense], backends: [{id: a, url: "http://127.0.0.1:1"}]}`, "trusted_proxies[0]"},
		{`{timeouts: {read_header: off}, backends: [{id: a, url: "http://127.0.0.1:1"}]}`, "timeouts.read_header: must be set"},
		{`{cookie: {same_site: none, secure: never}, backends: [{id: a, url: "http://127.0.0.1:1"}]}`, "cookie.same_site: none requires a Secure cookie"},
		{`{tls: {cert: a.pem}, backends: [{id: a, url: "http://127.0.0.1:1"}]}`, "tls: cert and key must be set together"},
	} {
		c, err := Parse([]byte(tc.yaml))
		if err == nil {
			err = c.Provision()
		}
		if err == nil {
			err = c.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrConfig) {
			t.Errorf("%s:\n got %v\nwant ErrConfig containing %q", tc.yaml, err, tc.want)
		}
	}
}

func TestConfigRejectsUnknownKeysAndBadDurations(t *testing.T) {
	for _, y := range []string{"polcy: cookie", "health: {interval: soon}", "health: {interval: -1s}"} {
		if _, err := Parse([]byte(y)); err == nil || !errors.Is(err, ErrConfig) {
			t.Errorf("%q parsed without error (%v)", y, err)
		}
	}
}

func TestNewGeneratesSecretWhenNoneConfigured(t *testing.T) {
	c := testConfig("cookie", bc("a", "http://127.0.0.1:1"))
	c.Secret = ""
	l1, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	c2 := testConfig("cookie", bc("a", "http://127.0.0.1:1"))
	c2.Secret = ""
	l2, err := New(c2)
	if err != nil {
		t.Fatal(err)
	}
	if len(l1.secret) != 32 || string(l1.secret) == string(l2.secret) {
		t.Errorf("generated secrets: %x and %x; want 32 random bytes each", l1.secret, l2.secret)
	}
}
