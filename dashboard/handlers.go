package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// actionTimeout bounds one button's action: starting a node waits until it
// is ready.
const actionTimeout = 60 * time.Second

// templateFuncs are the helpers index.html uses.
var templateFuncs = template.FuncMap{
	"rate": func(f float64) string { return fmt.Sprintf("%.1f", f) },
	// hostport shows a node's URL without its scheme, to fit the card.
	"hostport": func(u string) string {
		_, rest, ok := strings.Cut(u, "://")
		if !ok {
			return u
		}
		return rest
	},
}

// pageData is what index.html renders: the state and the notice left by a
// form action (?done=… or ?error=…).
type pageData struct {
	State
	Done, Error string
}

func (d *Dashboard) servePage(w http.ResponseWriter, r *http.Request) {
	data := pageData{State: d.Snapshot(), Done: r.URL.Query().Get("done"), Error: r.URL.Query().Get("error")}
	var buf bytes.Buffer
	if err := d.page.Execute(&buf, data); err != nil {
		d.log.Error("render dashboard", "error", err)
		http.Error(w, "dashboard: cannot render the page", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Everything the page needs comes from this server; nothing else may
	// run in it.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write(buf.Bytes())
}

func (d *Dashboard) serveState(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, d.Snapshot())
}

// actionResult is the JSON answer of a POST.
type actionResult struct {
	Node    string `json:"node,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

func (d *Dashboard) serveKill(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d.act(w, r, id, func(ctx context.Context) (string, error) {
		return id, d.cfg.Control.Kill(ctx, id)
	}, "killed %s (SIGKILL)")
}

func (d *Dashboard) serveStart(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d.act(w, r, id, func(ctx context.Context) (string, error) {
		return id, d.cfg.Control.Start(ctx, id)
	}, "started %s")
}

func (d *Dashboard) serveAdd(w http.ResponseWriter, r *http.Request) {
	d.act(w, r, "", d.cfg.Control.Add, "added %s")
}

// act runs one control action and answers: JSON for scripts and the
// page's own fetch calls, a 303 back to the page for a plain form post.
func (d *Dashboard) act(w http.ResponseWriter, r *http.Request, id string, do func(context.Context) (string, error), done string) {
	ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
	defer cancel()
	got, err := do(ctx)
	if got != "" {
		id = got
	}
	d.hub.requestSample()
	code, res := http.StatusOK, actionResult{Node: id}
	if err != nil {
		code = http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrUnknownNode):
			code = http.StatusNotFound
		case errors.Is(err, ErrConflict):
			code = http.StatusConflict
		default:
			d.log.Warn("dashboard action failed", "path", r.URL.Path, "node", id, "error", err)
		}
		res.Error = err.Error()
	} else {
		res.Message = fmt.Sprintf(done, id)
	}
	if wantsHTML(r) {
		q := "done=" + url.QueryEscape(res.Message)
		if err != nil {
			q = "error=" + url.QueryEscape(res.Error)
		}
		http.Redirect(w, r, "/?"+q, http.StatusSeeOther)
		return
	}
	writeJSON(w, code, res)
}

// wantsHTML reports whether the request is a browser's form submission
// (which asks for HTML) rather than a fetch or a script.
func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "dashboard: cannot encode the answer", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
