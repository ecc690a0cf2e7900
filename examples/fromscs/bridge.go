package fromscs

import (
	"log/slog"
	"net/http"

	"github.com/alexedwards/scs/v2"
	"github.com/roamsession/roam/session"
)

// Bridge returns middleware that moves users from scs to roam without
// logging them out, for the weeks after the switch. Mount it inside the
// roam middleware, with roam's cookie named differently from scs's:
//
//	sessions.Middleware(fromscs.Bridge(old, "user", "user", "cart")(mux))
//
// On a request that has no roam session but an scs one, it copies the
// values of keys into the roam session, makes the value under
// principalKey (when not "") the session's principal, and destroys the scs
// session, whose cookie scs then clears. Every later request of that user
// is roam's alone. Values must be JSON-encodable (roam's codec). When the
// copy fails (a value too large, the store down) the scs session is kept,
// so the next request tries again.
//
// Remove the bridge, and scs, once old.Lifetime has passed since the
// switch: no scs session is alive any more.
func Bridge(old *scs.SessionManager, principalKey string, keys ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return old.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx := r.Context()
			// scs gives a session it found in its store a token; a fresh
			// one has none until it is saved.
			if old.Token(ctx) != "" {
				if s := session.FromContext(ctx); s.IsNew() && s.Err() == nil {
					if err := copySession(old, s, r, principalKey, keys); err != nil {
						slog.WarnContext(ctx, "bridge from scs: session kept for the next request", "error", err)
					} else if err := old.Destroy(ctx); err != nil {
						slog.WarnContext(ctx, "bridge from scs: destroy the scs session", "error", err)
					}
				}
			}
			next.ServeHTTP(w, r)
		}))
	}
}

func copySession(old *scs.SessionManager, s *session.Session, r *http.Request, principalKey string, keys []string) error {
	ctx := r.Context()
	for _, k := range keys {
		if v := old.Get(ctx, k); v != nil {
			if err := s.Put(k, v); err != nil {
				return err
			}
		}
	}
	if principalKey != "" {
		if p := old.GetString(ctx, principalKey); p != "" {
			return s.SetPrincipal(p)
		}
	}
	return nil
}
