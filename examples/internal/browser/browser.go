// Package browser is a tiny cookie-keeping HTTP client for the examples'
// tests: each call returns "STATUS body" so an Example's output shows what
// a user would see.
package browser

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"
)

// Browser sends requests to one server and keeps its cookies.
type Browser struct {
	Base string // the server's URL, such as an httptest.Server's
	hc   *http.Client
}

// New returns a Browser for the server at base. It does not follow
// redirects, so a 303 after a form post is visible.
func New(base string) *Browser {
	jar, _ := cookiejar.New(nil) // cookiejar.New never fails without options
	return &Browser{Base: base, hc: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Get fetches path and returns "STATUS body", or "error: …".
func (b *Browser) Get(path string) string {
	return b.do(http.MethodGet, path, nil)
}

// Post submits form to path and returns "STATUS body", or "error: …".
func (b *Browser) Post(path string, form url.Values) string {
	return b.do(http.MethodPost, path, form)
}

func (b *Browser) do(method, path string, form url.Values) string {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.Base+path, body)
	if err != nil {
		return "error: " + err.Error()
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(fmt.Sprintf("%d %s", resp.StatusCode, text))
}

// Cookie returns the value of the named cookie the browser holds, or "".
func (b *Browser) Cookie(name string) string {
	u, err := url.Parse(b.Base)
	if err != nil {
		return ""
	}
	for _, c := range b.hc.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}
