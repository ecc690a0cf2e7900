// Package demoapp is the small login application that `roam node` serves on
// every node of a demo or benchmark cluster. It exists to make session
// behaviour visible: a user logs in on one node, and every later page says
// which node answered and whether the session followed the user there.
//
// # HTTP
//
//	GET  /             HTML: the login form, or the profile (user, counter, serving node)
//	POST /login        form or JSON {username, password}: 303 to / (JSON: 200 {"node","user"})
//	POST /logout       destroys the session: 303 to / (JSON: 200 {"node"})
//	POST /counter      HTML form behind the profile's "+1" button: 303 to /
//	GET  /api/me       200 {"node","user","counter"}; 401 {"error"} when not logged in
//	POST /api/counter  200 {"node","counter"} after incrementing; 401 when not logged in
//	GET  /healthz      200 while the process runs
//	GET  /readyz       200 when Config.Ready reports nil, else 503 "not ready" (the cause is logged)
//	GET  /metrics      Prometheus text format
//	GET  /static/…     the embedded stylesheet
//
// Every response carries X-Roam-Node with the node id, including 404s and
// the session manager's 503s.
//
// A login answers JSON when the request body is JSON (Content-Type:
// application/json) or the client asks for it (Accept: application/json);
// otherwise it answers HTML. Any username of 1–64 characters of
// [A-Za-z0-9_.-] is accepted with the demo password. Login renews the
// session id (the defence against session fixation) and drops whatever the
// previous session held, so every login starts with counter 0.
//
// # Session keys
//
// The user is the session's principal (Session.SetPrincipal). The session
// holds two attributes: "counter" (int) and "node" (the id of the node that
// last served a page or a write to the user). "node" is written only when it
// changes, so a read-only request (GET /api/me, or GET / on the same node as
// before) never writes to the store.
//
// # Cross-site request forgery
//
// The session cookie is SameSite=Lax, so browsers do not send it with
// cross-site POSTs: that is the main defence. Every POST is additionally
// checked with net/http's CrossOriginProtection: a request whose
// Sec-Fetch-Site says cross-site or same-site, or (from browsers too old to
// send Sec-Fetch-Site) whose Origin does not match its Host, is rejected with
// 403 before its session is loaded. Requests without either header (curl,
// other programs) pass; they carry no ambient browser credentials. The JSON
// endpoint POST /api/counter also demands Content-Type: application/json
// when it has a body (415 otherwise), so an HTML form cannot reach it.
//
// A balancer in front of the nodes must pass the client's Host header
// through unchanged for the Origin fallback to match.
//
// # Metrics
//
//	roam_node_info{node}                                 always 1
//	roam_node_http_requests_total{route,code}            requests answered
//	roam_node_http_request_duration_seconds{route}       latency histogram
//	roam_node_http_requests_in_flight                    requests being served
//	roam_node_logins_total{result}                       result: ok, bad_password, invalid
//	roam_session_loads_total, roam_session_creates_total, roam_session_updates_total,
//	roam_session_touches_total, roam_session_deletes_total, roam_session_errors_total
//	                                                     the session.Manager's Stats
//	go_*, process_*                                      runtime and process collectors
//
// route is the matched pattern ("GET /api/me", "POST /login", …) or
// "unmatched", so its values are bounded whatever clients send.
package demoapp
