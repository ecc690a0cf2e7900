// Package memcachedstore keeps sessions in one or more memcached servers,
// through github.com/bradfitz/gomemcache.
//
//	client, _, err := memcachedstore.NewClient([]string{"10.0.0.5:11211", "10.0.0.6:11211"}, memcachedstore.ClientOptions{})
//	…
//	defer client.Close()
//	store, err := memcachedstore.New(client, memcachedstore.Options{})
//	…
//	m, err := session.NewManager(store, session.Options{})
//
// # Layout
//
// Each session is one item, key Options.Prefix + id, holding the whole
// record (attributes, principal, deadlines) as a compact, versioned,
// checksummed binary blob. Memcached has no partial update, so a delta is
// a read-modify-write: gets returns the blob and its CAS token, the store
// applies the delta and writes with cas, which fails if anyone wrote in
// between; the store then re-reads and re-applies the delta to the fresh
// blob (bounded retries with jitter). Two requests of one user that change
// different attributes therefore both keep their changes, and a logout
// racing them wins: a cas on a deleted item fails and is never turned into
// an add.
//
// A Load is one get. A delta is a get and a cas (an add on creation), more
// only under contention. Delete is one delete.
//
// # Deadlines
//
// Memcached expirations are whole seconds, relative up to 30 days and an
// absolute Unix time beyond, and its clock advances about once a second, so
// an item can die a second or more before the expiration it was given. The
// store rounds the record's Expires up to whole seconds and adds two, so the
// item outlives the record; Load compares the record's own Expires with
// the clock, so the session still ends exactly at Expires.
//
// # Servers
//
// NewClient places keys with a rendezvous Selector: when a server is
// removed from the list only its share of the sessions moves (gomemcache's
// default modulo ServerList moves two thirds of them with three servers).
// The store does not take a failing server out of the list by itself: its
// sessions' requests fail fast with an error (the Manager answers 503) and
// succeed again when it comes back. Moving them to another server instead
// would log those users out anyway and, worse, a session deleted while its
// server was out of the list would reappear when the server returned with
// its old data.
//
// Memcached is a cache, not a database. A server that restarts comes back
// empty, and a full one evicts; the sessions it held are gone and their
// users must log in again. Use redisstore (with replicas), sqlstore or the
// cluster store when that is not acceptable.
//
// # What it does not do
//
// Memcached cannot list its keys or keep a secondary index, so a Store
// implements session.Store and session.Toucher but not
// session.PrincipalIndex ("log out all my devices" returns
// session.ErrNotSupported) nor session.Lister; it does not fake them.
package memcachedstore
