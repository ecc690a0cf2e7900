package memcachedstore

import (
	"math"
	"time"
)

// maxRelative is the largest expiration memcached reads as seconds from
// now (30 days); anything larger is an absolute Unix time.
const maxRelative = 30 * 24 * 60 * 60

// clockSlack is added to every item lifetime. Memcached's clock is a
// counter of seconds that a timer advances about once a second, and an item
// of relative expiration n dies when that counter reaches its value at the
// write plus n: since the counter lags real time by up to a second, the
// item lives somewhere in (n-1, n] seconds (measured: an expiration of 1
// dies after 0.2–0.8 s). A server starved of CPU advances its counter
// late and lags more: on a test machine at a load of 25 on 2 cores an item
// died 1.1 s before its nominal lifetime. Two seconds more make the item
// outlive the record's Expires even then; Load enforces Expires itself, so
// the slack never extends a session, it only keeps a dead item in memory
// two or three seconds longer.
const clockSlack = 2

// expiration returns the memcached expiration for an item whose record
// expires at expires, written at now: whole seconds rounded up, plus
// clockSlack, so that memcached never drops the item before expires. It is
// relative seconds up to 30 days and an absolute Unix time beyond (as the
// protocol requires); 0 (no TTL) for a zero expires or one beyond what
// the protocol's 32 bits can say (2038), and -1 (already expired) for an
// expires that is not after now.
func expiration(expires, now time.Time) int32 {
	if expires.IsZero() {
		return 0
	}
	left := expires.Sub(now)
	if left <= 0 {
		return -1
	}
	// Checked before rounding, so a saturated Sub (about 292 years) cannot
	// overflow the addition.
	if left <= maxRelative*time.Second {
		secs := int64((left+time.Second-1)/time.Second) + clockSlack
		if secs <= maxRelative {
			return int32(secs)
		}
	}
	abs := expires.Unix() + clockSlack
	if expires.Nanosecond() > 0 {
		abs++
	}
	if abs > math.MaxInt32 {
		return 0
	}
	return int32(abs)
}
