package demoapp

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
)

//go:embed templates static
var assets embed.FS

// contentSecurityPolicy allows only this origin's own stylesheet: the pages
// have no script at all, and may not be framed (clickjacking) or post forms
// elsewhere.
const contentSecurityPolicy = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// view is what every page shows.
type view struct {
	Node string
}

func (a *App) view() view { return view{Node: a.node} }

type loginView struct {
	view
	Hint     bool   // show the default password
	Error    string // why the last attempt failed
	Username string // what was typed, to fill the field again
}

type profileView struct {
	view
	User     string
	Counter  int
	PrevNode string // the node that served the session before this one, or ""
}

type errorView struct {
	view
	Message string
}

// pages holds one template set per page, each the layout plus the page's
// "content", so that pages do not overwrite each other's blocks.
type pages struct {
	loginT, profileT, errorT *template.Template
}

func parsePages() (*pages, error) {
	parse := func(page string) (*template.Template, error) {
		t, err := template.ParseFS(assets, "templates/layout.html", "templates/"+page)
		if err != nil {
			return nil, fmt.Errorf("parse template %s: %w", page, err)
		}
		return t, nil
	}
	var p pages
	var err error
	if p.loginT, err = parse("login.html"); err != nil {
		return nil, err
	}
	if p.profileT, err = parse("profile.html"); err != nil {
		return nil, err
	}
	if p.errorT, err = parse("error.html"); err != nil {
		return nil, err
	}
	return &p, nil
}

func (p *pages) login(w http.ResponseWriter, code int, v loginView) { render(w, p.loginT, code, v) }
func (p *pages) profile(w http.ResponseWriter, v profileView) {
	render(w, p.profileT, http.StatusOK, v)
}
func (p *pages) error(w http.ResponseWriter, code int, v errorView) { render(w, p.errorT, code, v) }

// render executes t into a buffer first, so a template failure becomes a
// clean 500 instead of half a page, then writes it with the security
// headers. Every page is per user (or says which node answered), so none
// may be cached.
func render(w http.ResponseWriter, t *template.Template, code int, data any) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		writeText(w, http.StatusInternalServerError, "internal error\n")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// JSON answers.
type (
	errorBody struct {
		Error string `json:"error"`
	}
	nodeBody struct {
		Node string `json:"node"`
	}
	loginBody struct {
		Node string `json:"node"`
		User string `json:"user"`
	}
	meBody struct {
		Node    string `json:"node"`
		User    string `json:"user"`
		Counter int    `json:"counter"`
	}
	counterBody struct {
		Node    string `json:"node"`
		Counter int    `json:"counter"`
	}
)

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the fixed types above come here; they always marshal.
		code, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func writeText(w http.ResponseWriter, code int, s string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(s)))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(s))
}

// staticFiles serves the embedded assets. Directory listings are refused:
// there is nothing to browse.
func staticFiles(fsys fs.FS) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}
