package sqlstore

// Retryable exposes retryable to the external tests, which check it against
// errors real servers raise.
var Retryable = retryable

// Statements returns the SQL text the store sends for a Load and for the
// two statements of a one-key delta, so the benchmarks can run the bare
// statements beside the store on the same connection pool.
func Statements(s *Store) (load, update, upsertOne string) {
	return s.q.load, s.q.update[setTouched|setExpires], s.q.upsertAttrs(1)
}
