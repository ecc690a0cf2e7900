// Package deploy holds no code: it is the home of roam's example
// deployment files and of the tests that run them for real.
//
//	haproxy/   HAProxy in front of roam nodes: cookie insert, consistent hash
//	nginx/     nginx in front of roam nodes: hash on the session cookie, ip_hash
//	grafana/   a dashboard for roam's Prometheus metrics
//	systemd/   units for `roam node` and `roam lb`
//	k8s/       a StatefulSet of cluster:backup nodes, seeded by a headless Service
//
// The tests build ./cmd/roam once, start real `roam node` processes on
// free loopback ports, and run the real haproxy and nginx (Debian's
// packages, installed by `make deps`) with the files from this directory,
// rewritten only where an address or a path must change. Each balancer
// test logs a user in, kills the node that serves the user with SIGKILL,
// and checks that the user is still logged in, with every acknowledged
// write, on another node. A missing haproxy or nginx skips its tests
// (fails them under CI=true), as internal/testserver does for the stores.
//
// See deploy/README.md for what each file is and what could not be tested
// here.
package deploy
