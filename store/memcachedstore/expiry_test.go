package memcachedstore

import (
	"math"
	"testing"
	"time"
)

func TestExpiration(t *testing.T) {
	now := time.Date(2026, 4, 1, 12, 0, 0, 250_000_000, time.UTC) // not on a second
	day := 24 * time.Hour
	cases := []struct {
		name    string
		expires time.Time
		want    int32
	}{
		{"zero: no TTL", time.Time{}, 0},
		{"already past", now.Add(-time.Second), -1},
		{"exactly now", now, -1},
		{"1 ns ahead rounds up to 1 s, plus the clock slack", now.Add(1), 1 + clockSlack},
		{"exactly 1 s", now.Add(time.Second), 1 + clockSlack},
		{"1.5 s", now.Add(1500 * time.Millisecond), 2 + clockSlack},
		{"30 min", now.Add(30 * time.Minute), 1800 + clockSlack},
		{"largest relative: 30 days less the slack", now.Add(30*day - clockSlack*time.Second), maxRelative},
		{"30 days: absolute, rounded up", now.Add(30 * day), int32(now.Add(30*day).Unix() + 1 + clockSlack)},
		{"a year on a whole second: absolute", time.Unix(now.Add(365*day).Unix(), 0), int32(now.Add(365*day).Unix() + clockSlack)},
		{"beyond 2038: no TTL", time.Unix(math.MaxInt32, 0), 0},
		{"far future saturating Sub: no TTL", time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), 0},
	}
	for _, c := range cases {
		if got := expiration(c.expires, now); got != c.want {
			t.Errorf("%s: expiration(%v) = %d, want %d", c.name, c.expires, got, c.want)
		}
	}
}

// TestExpirationNeverBeforeExpires checks the property over many offsets:
// the lifetime memcached can give an item of expiration n, which is more
// than n-1 seconds when its clock ticks on time, reaches Expires with a
// second to spare for a clock that lags.
func TestExpirationNeverBeforeExpires(t *testing.T) {
	now := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	for ms := int64(1); ms <= 40*24*3600*1000; ms = ms*3 + 7 {
		expires := now.Add(time.Duration(ms) * time.Millisecond)
		e := int64(expiration(expires, now))
		var dies time.Time
		if e <= maxRelative {
			dies = now.Add(time.Duration(e-2) * time.Second) // the earliest a relative item can go, its clock a second late
		} else {
			dies = time.Unix(e, 0) // absolute: memcached's clock lags, never leads
		}
		if dies.Before(expires) {
			t.Fatalf("Expires %v ahead: expiration %d lets memcached drop the item at %v, %v early", expires.Sub(now), e, dies, expires.Sub(dies))
		}
		if slack := dies.Sub(expires); slack > (clockSlack+1)*time.Second {
			t.Fatalf("Expires %v ahead: expiration %d keeps the item %v beyond Expires, want at most %d s", expires.Sub(now), e, slack, clockSlack+1)
		}
	}
}
