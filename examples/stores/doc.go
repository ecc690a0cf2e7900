// Package stores holds, as compile-only examples, the code in
// docs/embedding.md's "Choosing a store" that opens each of roam's stores,
// so the page cannot drift from the stores' APIs. They are not run: each
// needs its server (the stores' own tests start real ones).
package stores
