//go:build race

package sqlstore_test

// raceEnabled reports that the race detector instruments this binary. It
// makes modernc.org/sqlite, C translated to Go, about ten times slower.
const raceEnabled = true
